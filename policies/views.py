"""Web UI: resources, policies and the authorization audit log. Views parse HTTP, call services."""

from __future__ import annotations

from functools import cache
from typing import Any, TypedDict
from zoneinfo import available_timezones

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.models import AuthProvider, Group
from accounts.ui import (
    UI,
    admin_required,
    apply_errors,
    confirm_page,
    form_page,
    get_or_404,
    list_context,
    paginate,
    render_page,
    search,
)
from firezone_site.errors import ValidationFailed
from policies import forms, hooks, services, validation
from policies.models import Policy, Resource, Site

# --- resources ---------------------------------------------------------------------------------


def _resources(ui: UI) -> Any:
    return Resource.objects.for_account(ui.account)


def _site_choices(ui: UI) -> list[tuple[str, str]]:
    return [
        (str(pk), name)
        for pk, name in Site.objects.for_account(ui.account)
        .order_by("name")
        .values_list("pk", "name")[:1000]
    ]


def _site(ui: UI, pk: str) -> Site | None:
    try:
        return get_or_404(Site.objects.for_account(ui.account), pk)
    except Http404:
        return None


@admin_required
def resource_list(request: HttpRequest, ui: UI) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    resources = (
        search(_resources(ui), q, ["name", "address"])
        .select_related("site")
        .only(
            "id",
            "name",
            "kind",
            "address",
            "filters",
            "site__id",
            "site__name",
            "account_id",
        )
    )
    site_id = request.GET.get("site", "")
    if site_id:
        site = _site(ui, site_id)
        resources = resources.filter(site=site) if site else resources.none()
    page = paginate(request, resources.order_by("name", "id"))
    return render_page(
        request, ui, "policies/resource_list.html", list_context(request, page), nav="resources"
    )


@admin_required
def resource_new(request: HttpRequest, ui: UI) -> HttpResponse:
    initial = {"site": request.GET.get("site", "")}
    form = forms.ResourceForm(request.POST or None, sites=_site_choices(ui), initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            resource = services.create_resource(
                ui.account,
                name=data["name"],
                kind=data["kind"],
                address=data["address"],
                site=_site(ui, data["site"]),
                filters=form.filters(),
                address_description=data["address_description"],
                ip_stack=data["ip_stack"],
            )
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"Resource {resource.name} created.")
            return redirect("resource_detail", resource.pk)
    return form_page(
        request,
        ui,
        form,
        title="New resource",
        cancel_url=reverse("resource_list"),
        submit_label="Create resource",
        template="policies/resource_form.html",
        nav="resources",
    )


@admin_required
def resource_detail(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    resource = get_or_404(_resources(ui).select_related("site"), pk)
    policies = (
        Policy.objects.for_account(ui.account)
        .filter(resource=resource)
        .select_related("group")
        .order_by("group__name")[:100]
    )
    return render_page(
        request,
        ui,
        "policies/resource_detail.html",
        {
            "resource": resource,
            "policies": policies,
            "not_enforced_note": forms.NOT_ENFORCED_NOTE
            if resource.kind in forms.NOT_ENFORCED_KINDS
            else "",
        },
        nav="resources",
    )


@admin_required
def resource_edit(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    resource = get_or_404(_resources(ui), pk)
    form = forms.ResourceForm(
        request.POST or None,
        sites=_site_choices(ui),
        initial=forms.ResourceForm.initial_for(resource),
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            site = _site(ui, data["site"])
            if site is None:  # deleted since the form was rendered
                raise ValidationFailed({"site": "Choose a site of this account."})
            services.update_resource(
                resource,
                name=data["name"],
                kind=data["kind"],
                address=data["address"],
                site=site,
                filters=form.filters(),
                address_description=data["address_description"],
                ip_stack=data["ip_stack"],
            )
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, "Resource saved.")
            return redirect("resource_detail", resource.pk)
    return form_page(
        request,
        ui,
        form,
        title=f"Edit {resource.name}",
        cancel_url=reverse("resource_detail", args=[resource.pk]),
        template="policies/resource_form.html",
        nav="resources",
    )


@admin_required
def resource_delete(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    resource = get_or_404(_resources(ui), pk)
    if request.method == "POST":
        services.delete_resource(resource)
        messages.success(request, f"Resource {resource.name} deleted.")
        return redirect("resource_list")
    return confirm_page(
        request,
        ui,
        title=f"Delete {resource.name}",
        nav="resources",
        question=f"Delete the resource {resource.name}?",
        consequence="Its policies are deleted and current access is revoked.",
        cancel_url=reverse("resource_detail", args=[resource.pk]),
    )


@admin_required
def dns_match(request: HttpRequest, ui: UI) -> HttpResponse:
    """htmx helper on the resource form: does this DNS pattern cover that name?"""
    pattern = request.GET.get("address", "").strip()
    name = request.GET.get("probe", "").strip()
    if not pattern or not name:
        text, css = "Type a name to test the pattern.", "muted"
    else:
        try:
            canonical = validation.normalize_resource_address("dns", pattern)
        except validation.InvalidInput as exc:
            text, css = str(exc), "error"
        else:
            hit = validation.dns_pattern_matches(canonical, name)
            text = f"{name} {'matches' if hit else 'does not match'} {canonical}"
            css = "ok" if hit else "muted"
    return render_page(request, ui, "policies/_dns_match.html", {"text": text, "css": css})


@admin_required
def options(request: HttpRequest, ui: UI, what: str) -> HttpResponse:
    """Datalist options for the policy form's group/resource name inputs (search as you type)."""
    q = request.GET.get(what, request.GET.get("q", "")).strip()
    qs: Any = (
        Group.objects.for_account(ui.account)
        if what == "group"
        else Resource.objects.for_account(ui.account)
    )
    names = list(search(qs, q, ["name"]).order_by("name").values_list("name", flat=True)[:20])
    return render_page(request, ui, "policies/_options.html", {"names": names})


# --- policies ----------------------------------------------------------------------------------


def _policies(ui: UI) -> Any:
    return Policy.objects.for_account(ui.account)


@admin_required
def policy_list(request: HttpRequest, ui: UI) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    policies = search(_policies(ui), q, ["group__name", "resource__name", "description"])
    policies = policies.select_related("group", "resource").only(
        "id",
        "description",
        "conditions",
        "disabled_at",
        "account_id",
        "group__id",
        "group__name",
        "resource__id",
        "resource__name",
        "resource__address",
    )
    page = paginate(request, policies.order_by("resource__name", "group__name", "id"))
    return render_page(
        request, ui, "policies/policy_list.html", list_context(request, page), nav="policies"
    )


def _providers(ui: UI) -> list[tuple[str, str]]:
    return [
        (str(pk), name)
        for pk, name in AuthProvider.objects.for_account(ui.account)
        .order_by("name")
        .values_list("pk", "name")[:200]
    ]


@cache
def _time_zones() -> list[str]:
    return sorted(available_timezones())


class _PolicyFields(TypedDict):
    group: Group
    resource: Resource
    conditions: list[dict[str, Any]]
    description: str


def _policy_fields(ui: UI, form: forms.PolicyForm) -> _PolicyFields | None:
    """The service arguments a valid form names, or None with the unknown names marked."""
    group = (
        Group.objects.for_account(ui.account)
        .filter(name=form.cleaned_data["group"].strip())
        .first()
    )
    resource = (
        Resource.objects.for_account(ui.account)
        .filter(name=form.cleaned_data["resource"].strip())
        .first()
    )
    if group is None:
        form.add_error("group", "No group with this name.")
    if resource is None:
        form.add_error("resource", "No resource with this name.")
    if group is None or resource is None:
        return None
    return _PolicyFields(
        group=group,
        resource=resource,
        conditions=form.conditions(),
        description=form.cleaned_data["description"],
    )


def _name_of(queryset: Any, pk: str) -> str:
    try:
        return str(get_or_404(queryset, pk).name)
    except Http404:
        return ""


@admin_required
def policy_new(request: HttpRequest, ui: UI) -> HttpResponse:
    initial = {
        "group": _name_of(Group.objects.for_account(ui.account), request.GET.get("group", "")),
        "resource": _name_of(_resources(ui), request.GET.get("resource", "")),
        "time_zone": "UTC",
    }
    form = forms.PolicyForm(request.POST or None, providers=_providers(ui), initial=initial)
    if request.method == "POST" and form.is_valid():
        fields = _policy_fields(ui, form)
        if fields is not None:
            try:
                policy = services.create_policy(ui.account, **fields)
            except ValidationFailed as exc:
                apply_errors(form, exc)
            else:
                messages.success(request, "Policy created.")
                return redirect("policy_detail", policy.pk)
    return form_page(
        request,
        ui,
        form,
        title="New policy",
        cancel_url=reverse("policy_list"),
        submit_label="Create policy",
        template="policies/policy_form.html",
        nav="policies",
        extra={"time_zones": _time_zones()},
    )


@admin_required
def policy_detail(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    policy = get_or_404(_policies(ui).select_related("group", "resource"), pk)
    recent = hooks.recent_authorizations_of_policy(ui.account.pk, policy.pk, limit=20)
    return render_page(
        request,
        ui,
        "policies/policy_detail.html",
        {
            "policy": policy,
            "conditions": describe_conditions(policy.conditions, ui),
            "reported_only_note": forms.REPORTED_ONLY_NOTE
            if any(
                c.get("property") in forms.REPORTED_ONLY_PROPERTIES for c in policy.conditions or []
            )
            else "",
            "recent": recent,
            "now": timezone.now(),
        },
        nav="policies",
    )


@admin_required
def policy_edit(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    policy = get_or_404(_policies(ui).select_related("group", "resource"), pk)
    initial = {
        "group": policy.group.name,
        "resource": policy.resource.name,
        "description": policy.description,
        "time_zone": "UTC",
        **forms.PolicyForm.initial_conditions(policy.conditions),
    }
    form = forms.PolicyForm(request.POST or None, providers=_providers(ui), initial=initial)
    if request.method == "POST" and form.is_valid():
        fields = _policy_fields(ui, form)
        if fields is not None:
            try:
                services.update_policy(policy, **fields)
            except ValidationFailed as exc:
                apply_errors(form, exc)
            else:
                messages.success(request, "Policy saved.")
                return redirect("policy_detail", policy.pk)
    return form_page(
        request,
        ui,
        form,
        title="Edit policy",
        cancel_url=reverse("policy_detail", args=[policy.pk]),
        template="policies/policy_form.html",
        nav="policies",
        extra={"time_zones": _time_zones()},
    )


@admin_required
@require_POST
def policy_disable(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    policy = get_or_404(_policies(ui), pk)
    services.disable_policy(policy)
    messages.success(request, "Policy disabled; its current access was revoked.")
    return redirect("policy_detail", policy.pk)


@admin_required
@require_POST
def policy_enable(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    policy = get_or_404(_policies(ui), pk)
    services.enable_policy(policy)
    messages.success(request, "Policy enabled.")
    return redirect("policy_detail", policy.pk)


@admin_required
def policy_delete(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    policy = get_or_404(_policies(ui).select_related("group", "resource"), pk)
    if request.method == "POST":
        services.delete_policy(policy)
        messages.success(request, "Policy deleted.")
        return redirect("policy_list")
    return confirm_page(
        request,
        ui,
        title="Delete policy",
        nav="policies",
        question=f"Delete the policy {policy.group.name} → {policy.resource.name}?",
        consequence="Access it granted is revoked at once.",
        cancel_url=reverse("policy_detail", args=[policy.pk]),
    )


_OPERATOR_TEXT = {
    "is_in_cidr": "is in",
    "is_not_in_cidr": "is not in",
    "is_in": "is in",
    "is_not_in": "is not in",
    "is_in_day_of_week_time_ranges": "is within",
    "is": "is",
}
_PROPERTY_TEXT = {
    "remote_ip": "Remote IP",
    "remote_ip_location_region": "Country",
    "provider_id": "Auth provider",
    "current_utc_datetime": "Time",
    "client_verified": "Client verified",
}


def describe_conditions(conditions: list[dict[str, Any]], ui: UI) -> list[str]:
    """Conditions as sentences for the detail page."""
    provider_names = (
        dict(_providers(ui)) if any(c.get("property") == "provider_id" for c in conditions) else {}
    )
    out = []
    for cond in conditions or []:
        prop = cond.get("property", "")
        values = [provider_names.get(v, v) for v in cond.get("values", [])]
        if prop == "current_utc_datetime":
            values = [_describe_window(v) for v in values]
        if prop == "client_verified":
            out.append("Client is verified")
            continue
        out.append(
            f"{_PROPERTY_TEXT.get(prop, prop)} {_OPERATOR_TEXT.get(cond.get('operator', ''), '')} "
            f"{', '.join(values)}"
        )
    return out


def _describe_window(value: str) -> str:
    names = dict(forms.DAYS)
    letters, ranges, zone = value.split("/", 2)
    days = ", ".join(names.get(d, d)[:3] for d in letters)
    return f"{days} {'all day' if ranges == 'true' else ranges} ({zone})"
