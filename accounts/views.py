"""Web UI: sign-in, groups, actors and account settings. Views parse HTTP and call services."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.views import LoginView, LogoutView
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import forms, hooks, services
from accounts.models import Actor, Group, Membership, Token
from accounts.ui import (
    UI,
    admin_required,
    apply_errors,
    confirm_page,
    error_text,
    form_page,
    get_or_404,
    list_context,
    no_store,
    paginate,
    render_page,
    search,
)
from firezone_site import once
from firezone_site.errors import NotFound, PermissionDenied, ValidationFailed

# --- sign-in -----------------------------------------------------------------------------------


class SignInView(LoginView):
    template_name = "accounts/sign_in.html"
    authentication_form = forms.SignInForm
    redirect_authenticated_user = True


class SignOutView(LogoutView):
    pass


# --- groups ------------------------------------------------------------------------------------


def _groups(ui: UI) -> Any:
    return Group.objects.for_account(ui.account)


@admin_required
def group_list(request: HttpRequest, ui: UI) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    groups = search(_groups(ui), q, ["name"]).annotate(member_count=Count("memberships"))
    page = paginate(request, groups.order_by("kind", "name"))  # managed (Everyone) first
    return render_page(
        request, ui, "accounts/group_list.html", list_context(request, page), nav="groups"
    )


@admin_required
def group_new(request: HttpRequest, ui: UI) -> HttpResponse:
    form = forms.GroupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            group = services.create_group(ui.account, name=form.cleaned_data["name"])
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"Group {group.name} created.")
            return redirect("group_detail", group.pk)
    return form_page(
        request,
        ui,
        form,
        title="New group",
        cancel_url=reverse("group_list"),
        nav="groups",
        submit_label="Create group",
    )


@admin_required
def group_detail(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    return _group_detail_page(request, ui, get_or_404(_groups(ui), pk))


def _group_detail_page(
    request: HttpRequest,
    ui: UI,
    group: Group,
    add_form: forms.AddMemberForm | None = None,
    set_form: forms.SetMembersForm | None = None,
) -> HttpResponse:
    """The group page; with a bound member form it re-renders that form's errors (422)."""
    q = request.GET.get("q", "").strip()
    members = search(
        Membership.objects.for_account(ui.account).filter(group=group).select_related("actor"),
        q,
        ["actor__name", "actor__email"],
    ).order_by("actor__name")
    page = paginate(request, members)
    policies = group.policies.select_related("resource").order_by("resource__name")[:50]
    return render_page(
        request,
        ui,
        "accounts/group_detail.html",
        list_context(
            request,
            page,
            group=group,
            policies=policies,
            add_form=add_form or forms.AddMemberForm(),
            set_form=set_form or forms.SetMembersForm(),
        ),
        nav="groups",
        status=422 if add_form is not None or set_form is not None else 200,
    )


@admin_required
def group_edit(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    group = get_or_404(_groups(ui), pk)
    if group.is_managed:
        return confirm_page(
            request,
            ui,
            title=f"Edit {group.name}",
            nav="groups",
            question=f"{group.name} is managed: it always holds every user and "
            "admin, and cannot be renamed.",
            cancel_url=reverse("group_detail", args=[group.pk]),
            error="Managed groups cannot be changed.",
            status=403,
        )
    form = forms.GroupForm(request.POST or None, initial={"name": group.name})
    if request.method == "POST" and form.is_valid():
        try:
            services.rename_group(group, name=form.cleaned_data["name"])
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, "Group renamed.")
            return redirect("group_detail", group.pk)
    return form_page(
        request,
        ui,
        form,
        title=f"Edit {group.name}",
        nav="groups",
        cancel_url=reverse("group_detail", args=[group.pk]),
    )


@admin_required
def group_delete(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    group = get_or_404(_groups(ui), pk)
    cancel = reverse("group_detail", args=[group.pk])
    if group.is_managed:
        return confirm_page(
            request,
            ui,
            title=f"Delete {group.name}",
            nav="groups",
            question="Managed groups cannot be deleted.",
            cancel_url=cancel,
            error="Managed groups cannot be deleted.",
            status=403,
        )
    if request.method == "POST":
        services.delete_group(group)
        messages.success(request, f"Group {group.name} deleted.")
        return redirect("group_list")
    return confirm_page(
        request,
        ui,
        title=f"Delete {group.name}",
        nav="groups",
        question=f"Delete the group {group.name}?",
        cancel_url=cancel,
        consequence="Its policies are deleted too; members lose that access.",
    )


@admin_required
@require_POST
def group_member_add(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    group = get_or_404(_groups(ui), pk)
    form = forms.AddMemberForm(request.POST)
    if form.is_valid():
        email = form.cleaned_data["email"].strip().lower()
        actor = Actor.objects.for_account(ui.account).filter(email=email).first()
        if actor is None:
            form.add_error("email", "No actor with this email in this account.")
        else:
            try:
                services.add_member(group, actor)
            except PermissionDenied as exc:
                form.add_error("email", str(exc))
            else:
                messages.success(request, f"{actor.name} added to {group.name}.")
                return redirect("group_detail", group.pk)
    return _group_detail_page(request, ui, group, add_form=form)


@admin_required
@require_POST
def group_members_set(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    group = get_or_404(_groups(ui), pk)
    form = forms.SetMembersForm(request.POST)
    if form.is_valid():
        emails = form.cleaned_emails()
        found = list(Actor.objects.for_account(ui.account).filter(email__in=emails))
        missing = sorted(set(emails) - {a.email for a in found})
        if missing:
            form.add_error("emails", f"Not in this account: {', '.join(missing[:10])}")
        else:
            try:
                services.set_members(group, found)
            except PermissionDenied as exc:
                form.add_error("emails", str(exc))
            else:
                messages.success(request, f"{group.name} now has {len(found)} members.")
                return redirect("group_detail", group.pk)
    return _group_detail_page(request, ui, group, set_form=form)


@admin_required
@require_POST
def group_member_remove(request: HttpRequest, ui: UI, pk: str, actor_pk: str) -> HttpResponse:
    group = get_or_404(_groups(ui), pk)
    actor = get_or_404(Actor.objects.for_account(ui.account), actor_pk)
    try:
        services.remove_member(group, actor)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{actor.name} removed from {group.name}.")
    return redirect("group_detail", group.pk)


# --- actors ------------------------------------------------------------------------------------


def _actors(ui: UI) -> Any:
    return Actor.objects.for_account(ui.account)


@admin_required
def actor_list(request: HttpRequest, ui: UI) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    kind = request.GET.get("type", "")
    actors = search(_actors(ui), q, ["name", "email"]).only(
        "id", "name", "email", "type", "disabled_at", "created_at", "account_id"
    )
    if kind in Actor.Type.values:
        actors = actors.filter(type=kind)
    page = paginate(request, actors.order_by("name", "id"))
    return render_page(
        request,
        ui,
        "accounts/actor_list.html",
        list_context(request, page, type=kind, types=Actor.Type.choices),
        nav="actors",
    )


@admin_required
def actor_new(request: HttpRequest, ui: UI) -> HttpResponse:
    form = forms.ActorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            actor = services.create_actor(
                ui.account,
                name=data["name"],
                email=data["email"],
                type=data["type"],
                password=data["password"] or None,
            )
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"{actor.name} created.")
            return redirect("actor_detail", actor.pk)
    return form_page(
        request,
        ui,
        form,
        title="New actor",
        cancel_url=reverse("actor_list"),
        nav="actors",
        submit_label="Create actor",
    )


@admin_required
def actor_detail(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    actor = get_or_404(_actors(ui), pk)
    groups = Group.objects.for_account(ui.account).filter(memberships__actor=actor).order_by("name")
    tokens = (
        Token.objects.for_account(ui.account)
        .filter(actor=actor, kind=Token.Kind.API)
        .order_by("-created_at")
    )
    return render_page(
        request,
        ui,
        "accounts/actor_detail.html",
        {
            "actor": actor,
            "groups": groups[:100],
            "tokens": tokens[:100],
            # The actor's devices live in the gateways app, above this one.
            **hooks.actor_page_context(ui.account.pk, actor),
        },
        nav="actors",
    )


def _check_may_manage(ui: UI, actor: Actor) -> None:
    try:
        services.check_may_manage(ui.actor, actor)
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(str(exc)) from exc


@admin_required
def actor_edit(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    actor = get_or_404(_actors(ui), pk)
    _check_may_manage(ui, actor)
    initial = {"name": actor.name, "email": actor.email, "type": actor.type}
    form = forms.ActorForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.update_actor(
                actor,
                name=data["name"],
                email=data["email"],
                type=data["type"],
                password=data["password"] or None,
            )
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, "Actor saved.")
            return redirect("actor_detail", actor.pk)
    return form_page(
        request,
        ui,
        form,
        title=f"Edit {actor.name}",
        nav="actors",
        cancel_url=reverse("actor_detail", args=[actor.pk]),
    )


def _actor_action(request: HttpRequest, ui: UI, pk: str, *, action: str) -> HttpResponse:
    actor = get_or_404(_actors(ui), pk)
    _check_may_manage(ui, actor)
    cancel = reverse("actor_detail", args=[actor.pk])
    labels = {
        "disable": (
            "Disable",
            f"Disable {actor.name}?",
            "Their sessions and tokens end and their access is revoked.",
        ),
        "enable": ("Enable", f"Enable {actor.name}?", ""),
        "delete": (
            "Delete",
            f"Delete {actor.name}?",
            "Their devices, tokens and memberships are deleted too.",
        ),
    }
    label, question, consequence = labels[action]
    error = ""
    if request.method == "POST":
        try:
            if action == "disable":
                services.disable_actor(actor)
            elif action == "enable":
                services.enable_actor(actor)
            else:
                services.delete_actor(actor)
        except ValidationFailed as exc:
            error = error_text(exc)
        else:
            messages.success(request, f"{actor.name}: {action}d.")
            return redirect(
                "actor_list" if action == "delete" else "actor_detail",
                *([] if action == "delete" else [actor.pk]),
            )
    return confirm_page(
        request,
        ui,
        title=f"{label} {actor.name}",
        question=question,
        consequence=consequence,
        cancel_url=cancel,
        nav="actors",
        confirm_label=label,
        error=error,
        status=422 if error else 200,
    )


@admin_required
def actor_disable(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    return _actor_action(request, ui, pk, action="disable")


@admin_required
def actor_enable(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    return _actor_action(request, ui, pk, action="enable")


@admin_required
def actor_delete(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    return _actor_action(request, ui, pk, action="delete")


# --- settings: account name and API tokens ------------------------------------------------------


def _service_accounts(ui: UI) -> list[Actor]:
    return list(
        Actor.objects.for_account(ui.account)
        .filter(
            type__in=[Actor.Type.SERVICE_ACCOUNT, Actor.Type.API_CLIENT], disabled_at__isnull=True
        )
        .order_by("name")[:500]
    )


def _api_tokens(ui: UI) -> Any:
    return (
        Token.objects.for_account(ui.account)
        .filter(kind=Token.Kind.API)
        .select_related("actor")
        .order_by("revoked_at", "-created_at")
    )


@admin_required
def settings_page(request: HttpRequest, ui: UI) -> HttpResponse:
    account_form = forms.AccountForm(initial={"name": ui.account.name})
    service_accounts = _service_accounts(ui)
    token_form = forms.ApiTokenForm(service_accounts=service_accounts)
    issued: services.IssuedToken | None = None
    status = 200
    if request.method == "POST" and request.POST.get("form") == "account":
        account_form = forms.AccountForm(request.POST)
        if account_form.is_valid():
            try:
                services.rename_account(ui.account, name=account_form.cleaned_data["name"])
            except ValidationFailed as exc:
                apply_errors(account_form, exc)
            else:
                messages.success(request, "Account renamed.")
                return redirect("settings")
        status = 422
    elif request.method == "POST" and request.POST.get("form") == "token":
        token_form = forms.ApiTokenForm(request.POST, service_accounts=service_accounts)
        if token_form.is_valid():
            issued = _create_api_token(ui, token_form)
        if issued is None:
            status = 422
        else:
            # Post-redirect-get: the secret is shown once on the page this redirects to, and a
            # reload issues no second token.
            once.stash(
                request,
                "api_token",
                ui.account.pk,
                {"token_id": str(issued.token.pk), "secret": issued.secret},
            )
            return redirect("settings")
    else:
        issued = _pop_issued_api_token(request, ui)
    q = request.GET.get("q", "").strip()
    tokens = search(_api_tokens(ui), q, ["name", "actor__name"])
    page = paginate(request, tokens)
    response = render_page(
        request,
        ui,
        "accounts/settings.html",
        list_context(
            request,
            page,
            account_form=account_form,
            token_form=token_form,
            issued=issued,
            now=timezone.now(),
        ),
        nav="settings",
        status=status,
    )
    return no_store(response) if issued is not None else response


def _pop_issued_api_token(request: HttpRequest, ui: UI) -> services.IssuedToken | None:
    stashed = once.pop(request, "api_token", ui.account.pk)
    if stashed is None:
        return None
    token = (
        Token.objects.for_account(ui.account)
        .filter(kind=Token.Kind.API, pk=stashed["token_id"])
        .select_related("actor")
        .first()
    )
    return None if token is None else services.IssuedToken(token=token, secret=stashed["secret"])


def _create_api_token(ui: UI, form: forms.ApiTokenForm) -> services.IssuedToken | None:
    data = form.cleaned_data
    try:
        return services.issue_api_token(
            ui.account,
            actor_id=data.get("actor") or None,
            new_service_account=data.get("new_service_account") or "",
            name=data.get("name") or "",
            expires_in_days=data.get("expires_in_days") or None,
        )
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    except ValidationFailed as exc:
        apply_errors(
            form, exc, aliases={"name": "new_service_account", "expires_at": "expires_in_days"}
        )
        return None


@admin_required
def token_revoke(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    token = get_or_404(Token.objects.for_account(ui.account).filter(kind=Token.Kind.API), pk)
    if request.method == "POST":
        services.revoke_token(token)
        messages.success(request, f"Token {token.name or token.pk} revoked.")
        return redirect("settings")
    return confirm_page(
        request,
        ui,
        title="Revoke API token",
        nav="settings",
        question=f"Revoke the token {token.name or token.pk}?",
        consequence="Programs using it are refused at once.",
        cancel_url=reverse("settings"),
        confirm_label="Revoke",
    )
