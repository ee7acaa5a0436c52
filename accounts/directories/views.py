"""Directory pages: list per kind, add/edit/enable/disable, sync now, last runs, SCIM token."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from accounts.directories import queries, services
from accounts.directories.forms import FORMS
from accounts.models import Directory
from accounts.ui import UI, admin_required, apply_errors, error_text, form_page, render_page
from firezone_site import once
from firezone_site.errors import ValidationFailed


def _get(ui: UI, pk: str) -> Directory:
    directory = queries.get_directory(ui.account, pk)
    if directory is None:
        raise Http404("No such directory.")
    return directory


@admin_required
def directory_list(request: HttpRequest, ui: UI) -> HttpResponse:
    by_kind = {label: [] for _, label in Directory.Kind.choices}  # type: dict[str, list[Directory]]
    for directory in queries.directories(ui.account):
        by_kind[directory.get_kind_display()].append(directory)
    return render_page(
        request,
        ui,
        "accounts/directories/list.html",
        {"by_kind": by_kind, "kinds": Directory.Kind.choices},
        nav="settings",
    )


@admin_required
def directory_new(request: HttpRequest, ui: UI) -> HttpResponse:
    kind = request.GET.get("kind", "")
    if kind not in FORMS:
        raise Http404("No such kind of directory.")
    form = FORMS[kind](request.POST or None)
    if request.method == "POST" and form.is_valid():
        minutes = form.cleaned_data.get("sync_interval_minutes") or 120
        try:
            directory = services.create_directory(
                ui.account,
                name=form.cleaned_data["name"],
                kind=kind,
                sync_interval=timedelta(minutes=minutes),
                config=form.config(),
            )
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"Directory {directory.name} added.")
            return redirect("directory_detail", directory.pk)
    return form_page(
        request,
        ui,
        form,
        title=f"Add a {Directory.Kind(kind).label} directory",
        cancel_url=reverse("directory_list"),
        nav="settings",
        submit_label="Add directory",
    )


@admin_required
def directory_edit(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    directory = _get(ui, pk)
    initial = {
        "name": directory.name,
        "sync_interval_minutes": int(directory.sync_interval.total_seconds() // 60),
        **{k: v for k, v in directory.config.items() if k != "secrets"},
    }
    form = FORMS[directory.kind](request.POST or None, initial=initial, creating=False)
    if request.method == "POST" and form.is_valid():
        minutes = form.cleaned_data.get("sync_interval_minutes")
        try:
            services.update_directory(
                directory,
                name=form.cleaned_data["name"],
                sync_interval=timedelta(minutes=minutes) if minutes else None,
                config=form.config(),
            )
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, "Directory saved.")
            return redirect("directory_detail", directory.pk)
    return form_page(
        request,
        ui,
        form,
        title=f"Edit {directory.name}",
        cancel_url=reverse("directory_detail", args=[directory.pk]),
        nav="settings",
    )


@admin_required
def directory_detail(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    directory = _get(ui, pk)
    issued = once.pop(request, "scim_token", directory.pk)
    runs = queries.last_runs(directory)
    return render_page(
        request,
        ui,
        "accounts/directories/detail.html",
        {
            "directory": directory,
            "runs": runs,
            "running": next((r for r in runs if r.status == "running"), None),
            "issued": issued,
            "scim_url": request.build_absolute_uri(f"/scim/v2/{directory.pk}"),
            "pulled": directory.kind in queries.PULLED,
        },
        nav="settings",
    )


@admin_required
def directory_action(request: HttpRequest, ui: UI, pk: str, action: str) -> HttpResponse:
    directory = _get(ui, pk)
    if request.method != "POST":
        return redirect("directory_detail", directory.pk)
    try:
        if action == "sync":
            services.request_sync(directory)
            messages.success(request, "Sync queued.")
        elif action in ("enable", "disable"):
            services.set_directory_enabled(directory, enabled=action == "enable")
            messages.success(request, f"Directory {action}d.")
        elif action == "scim-token":
            issued = services.issue_scim_token(directory)
            once.stash(
                request,
                "scim_token",
                directory.pk,
                {"secret": issued.secret, "token_id": str(issued.token.pk)},
            )
        else:
            raise Http404("No such action.")
    except ValidationFailed as exc:
        messages.error(request, error_text(exc))
    return redirect("directory_detail", directory.pk)
