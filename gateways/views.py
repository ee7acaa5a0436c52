"""Web UI: overview, sites (deploy gateways, live status) and static devices."""

from __future__ import annotations

import base64
import contextlib
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import services as account_services
from accounts.models import Actor
from accounts.ui import (
    UI,
    admin_required,
    apply_errors,
    confirm_page,
    error_text,
    form_page,
    get_or_404,
    list_context,
    member_required,
    no_store,
    paginate,
    render_page,
    search,
)
from firezone_site import once
from firezone_site.errors import ValidationFailed
from gateways import configs, forms, queries, services
from gateways.models import Authorization, ClientDevice, Gateway
from policies.models import Policy, Resource, Site

POLL_SECONDS = 5

# --- overview ----------------------------------------------------------------------------------


def _gateway_rows(ui: UI, site: Site | None = None) -> Any:
    qs = (
        Gateway.objects.for_account(ui.account)
        .select_related("site")
        .only(
            "id",
            "name",
            "online",
            "last_seen_at",
            "last_seen_remote_ip",
            "last_seen_version",
            "last_seen_endpoint",
            "endpoint_guessed",
            "endpoint_override",
            "ipv4",
            "ipv6",
            "account_id",
            "site__id",
            "site__name",
        )
    )
    if site is not None:
        qs = qs.filter(site=site)
    return qs.order_by("-online", "site__name", "name")


def _gateway_context(ui: UI, site: Site | None) -> dict[str, Any]:
    """The live gateway table: rows (at most 20 on the overview) and online/total counts."""
    qs = Gateway.objects.for_account(ui.account)
    if site is not None:
        qs = qs.filter(site=site)
    counts = qs.aggregate(total=Count("id"), online=Count("id", filter=Q(online=True)))
    return {
        "gateways": _gateway_rows(ui, site)[: 200 if site else 20],
        "online_count": counts["online"],
        "total_count": counts["total"],
    }


def _recent_authorizations(ui: UI) -> Any:
    return Authorization.objects.for_account(ui.account).order_by("-created_at", "-id")[:10]


@member_required
def overview(request: HttpRequest, ui: UI) -> HttpResponse:
    if not ui.is_admin:
        return redirect("device_list")
    counts = {
        "sites": Site.objects.for_account(ui.account).count(),
        "resources": Resource.objects.for_account(ui.account).count(),
        "policies": Policy.objects.for_account(ui.account).count(),
        "actors": Actor.objects.for_account(ui.account).count(),
    }
    return render_page(
        request,
        ui,
        "gateways/overview.html",
        {
            "counts": counts,
            **_gateway_context(ui, None),
            "recent": _recent_authorizations(ui),
            "static_activity": queries.recent_static_activity(ui.account),
            "now": timezone.now(),
            "poll": POLL_SECONDS,
        },
        nav="overview",
    )


@admin_required
def live_gateways(request: HttpRequest, ui: UI) -> HttpResponse:
    """Polled fragment: gateway rows with online status (optionally one site's)."""
    site = None
    if request.GET.get("site"):
        site = get_or_404(Site.objects.for_account(ui.account), request.GET["site"])
    return render_page(
        request,
        ui,
        "gateways/_gateway_rows.html",
        {
            **_gateway_context(ui, site),
            "site": site,
            "poll": POLL_SECONDS,
        },
    )


@admin_required
def live_authorizations(request: HttpRequest, ui: UI) -> HttpResponse:
    return render_page(
        request,
        ui,
        "gateways/_recent_authorizations.html",
        {
            "recent": _recent_authorizations(ui),
            "now": timezone.now(),
            "poll": POLL_SECONDS,
        },
    )


# --- sites -------------------------------------------------------------------------------------


def _sites(ui: UI) -> Any:
    return Site.objects.for_account(ui.account)


@admin_required
def site_list(request: HttpRequest, ui: UI) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    sites = search(_sites(ui), q, ["name"]).annotate(
        gateway_count=Count("gateways", distinct=True),
        online_count=Count("gateways", filter=Q(gateways__online=True), distinct=True),
    )
    page = paginate(request, sites.order_by("name"))
    return render_page(
        request, ui, "gateways/site_list.html", list_context(request, page), nav="sites"
    )


def portal_url(request: HttpRequest) -> str:
    """What gateways connect to: FZ_PORTAL_URL when set, else this request's own origin."""
    configured = getattr(settings, "FZ_PORTAL_URL", "")
    if configured:
        return str(configured).rstrip("/")
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host()}"


def _deploy_page(request: HttpRequest, ui: UI, site: Site, secret: str) -> HttpResponse:
    url = portal_url(request)
    return no_store(
        render_page(
            request,
            ui,
            "gateways/site_deploy.html",
            {
                "site": site,
                "secret": secret,
                "portal_url": url,
                "command": f"firezone-gateway --portal-url {url} "
                "--token-file /etc/firezone/gateway-token",
                "env_command": f"FIREZONE_TOKEN='{secret}' firezone-gateway --portal-url {url}",
                "default_port": settings.FZ_GATEWAY_PORT,
                "poll": POLL_SECONDS,
                **_gateway_context(ui, site),
            },
            nav="sites",
        )
    )


@admin_required
def site_new(request: HttpRequest, ui: UI) -> HttpResponse:
    form = forms.SiteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            site, issued = services.create_site_with_token(
                ui.account, name=form.cleaned_data["name"]
            )
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            return _show_gateway_token(request, site, issued)
    return form_page(
        request,
        ui,
        form,
        title="New site",
        cancel_url=reverse("site_list"),
        nav="sites",
        submit_label="Create site",
    )


@admin_required
def site_detail(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    site = get_or_404(_sites(ui), pk)
    tokens = services.gateway_tokens(site).order_by("revoked_at", "-created_at")[:50]
    resources = Resource.objects.for_account(ui.account).filter(site=site).order_by("name")
    return render_page(
        request,
        ui,
        "gateways/site_detail.html",
        {
            "site": site,
            **_gateway_context(ui, site),
            "tokens": tokens,
            "resources": resources[:50],
            "resource_count": resources.count(),
            "now": timezone.now(),
            "poll": POLL_SECONDS,
            "max_gateways": settings.FZ_MAX_GATEWAYS_PER_SITE,
            "retention_days": settings.FZ_GATEWAY_RETENTION_DAYS,
        },
        nav="sites",
    )


def _show_gateway_token(
    request: HttpRequest, site: Site, issued: account_services.IssuedToken
) -> HttpResponse:
    # Post-redirect-get: a reload of the deploy page cannot create a second site or token.
    once.stash(request, "gateway_token", site.pk, {"secret": issued.secret})
    return redirect("site_deploy", site.pk)


@admin_required
@require_POST
def site_token(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    site = get_or_404(_sites(ui), pk)
    return _show_gateway_token(request, site, services.issue_gateway_token(site))


@admin_required
def site_deploy(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    """The token just issued, shown once; afterwards the site page (a new token is one click)."""
    site = get_or_404(_sites(ui), pk)
    stashed = once.pop(request, "gateway_token", site.pk)
    if stashed is None:
        messages.info(
            request, "A gateway token is shown only once. Issue a new token to deploy a gateway."
        )
        return redirect("site_detail", site.pk)
    return _deploy_page(request, ui, site, stashed["secret"])


@admin_required
def site_token_revoke(request: HttpRequest, ui: UI, pk: str, token_pk: str) -> HttpResponse:
    site = get_or_404(_sites(ui), pk)
    token = get_or_404(services.gateway_tokens(site), token_pk)
    if request.method == "POST":
        account_services.revoke_token(token)
        messages.success(request, "Gateway token revoked.")
        return redirect("site_detail", site.pk)
    return confirm_page(
        request,
        ui,
        title="Revoke gateway token",
        nav="sites",
        question=f"Revoke the token {token.name or token.pk}?",
        consequence="Gateways using it cannot reconnect.",
        cancel_url=reverse("site_detail", args=[site.pk]),
        confirm_label="Revoke",
    )


@admin_required
def site_edit(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    site = get_or_404(_sites(ui), pk)
    form = forms.SiteForm(request.POST or None, initial={"name": site.name})
    if request.method == "POST" and form.is_valid():
        try:
            services.rename_site(site, name=form.cleaned_data["name"])
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, "Site renamed.")
            return redirect("site_detail", site.pk)
    return form_page(
        request,
        ui,
        form,
        title=f"Rename {site.name}",
        nav="sites",
        cancel_url=reverse("site_detail", args=[site.pk]),
    )


@admin_required
def site_delete(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    site = get_or_404(_sites(ui), pk)
    error = ""
    if request.method == "POST":
        try:
            services.delete_site(site)
        except ValidationFailed as exc:
            error = error_text(exc)
        else:
            messages.success(request, f"Site {site.name} deleted.")
            return redirect("site_list")
    return confirm_page(
        request,
        ui,
        title=f"Delete {site.name}",
        nav="sites",
        question=f"Delete the site {site.name}?",
        consequence="Its gateways are disconnected and their tokens end.",
        cancel_url=reverse("site_detail", args=[site.pk]),
        error=error,
        status=422 if error else 200,
    )


@admin_required
def gateway_endpoint(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    gateway = get_or_404(Gateway.objects.for_account(ui.account).select_related("site"), pk)
    form = forms.GatewayEndpointForm(
        request.POST or None, initial={"endpoint": gateway.endpoint_override}
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.set_gateway_endpoint(gateway, endpoint=form.cleaned_data["endpoint"])
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"Endpoint of {gateway.name} saved.")
            return redirect("site_detail", gateway.site_id)
    return form_page(
        request,
        ui,
        form,
        title=f"Public endpoint of {gateway.name}",
        nav="sites",
        cancel_url=reverse("site_detail", args=[gateway.site_id]),
    )


# --- devices -----------------------------------------------------------------------------------


def _devices(ui: UI) -> QuerySet[ClientDevice]:
    qs = ClientDevice.objects.for_account(ui.account)
    # Members see exactly their own devices; another user's device id is a 404 like any other.
    return qs if ui.is_admin else qs.filter(actor=ui.actor)


@member_required
def device_list(request: HttpRequest, ui: UI) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    fields = ["name", "actor__name", "actor__email"] if ui.is_admin else ["name"]
    devices = (
        search(_devices(ui), q, fields)
        .select_related("actor")
        .only(
            "id",
            "name",
            "kind",
            "ipv4",
            "ipv6",
            "config_version",
            "last_seen_at",
            "disabled_at",
            "account_id",
            "actor__id",
            "actor__name",
            "actor__email",
        )
    )
    page = paginate(request, devices.order_by("name", "id"))
    return render_page(
        request, ui, "gateways/device_list.html", list_context(request, page), nav="devices"
    )


@member_required
def device_new(request: HttpRequest, ui: UI) -> HttpResponse:
    initial: dict[str, Any] = {}
    if ui.is_admin and request.GET.get("actor"):
        with contextlib.suppress(Http404):
            initial["actor"] = get_or_404(
                Actor.objects.for_account(ui.account), request.GET["actor"]
            ).email
    form = forms.DeviceForm(request.POST or None, choose_actor=ui.is_admin, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        owner: Actor | None = ui.actor
        if ui.is_admin:
            owner = (
                Actor.objects.for_account(ui.account)
                .filter(
                    email=data["actor"].strip().lower(),
                    type__in=[Actor.Type.USER, Actor.Type.ADMIN],
                )
                .first()
            )
            if owner is None:
                form.add_error("actor", "No user or admin with this email in this account.")
        if owner is not None:
            try:
                registered = services.register_static_device(
                    owner, name=data["name"], public_key=data["public_key"].strip() or None
                )
            except ValidationFailed as exc:
                apply_errors(form, exc)
            else:
                return _show_device_config(request, registered)
    return form_page(
        request,
        ui,
        form,
        title="Register a static device",
        nav="devices",
        cancel_url=reverse("device_list"),
        submit_label="Register device",
    )


def _show_device_config(
    request: HttpRequest, registered: services.RegisteredDevice
) -> HttpResponse:
    # Post-redirect-get: the config (with a generated private key) is shown once on the page
    # this redirects to; a reload registers nothing and shows no key.
    config = registered.config
    once.stash(
        request,
        "device_config",
        registered.device.pk,
        {
            "text": config.text,
            "version": config.version,
            "filename": config.filename,
            "has_private_key": registered.private_key is not None,
        },
    )
    return redirect("device_registered", registered.device.pk)


def _missing_gateways(device: ClientDevice) -> list[str]:
    """Names of the sites the device has resources in but that have no gateway yet."""
    return sorted(a.site.name for a in queries.device_assignments(device) if a.gateway_id is None)


@member_required
def device_registered(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    # With a generated key this is the only time the private key exists: show it, offer it as
    # a download straight from the page, and never store it.
    device = get_or_404(_devices(ui), pk)
    stashed = once.pop(request, "device_config", device.pk)
    if stashed is None:
        messages.info(request, "A new device's config is shown only once.")
        return redirect("device_detail", device.pk)
    config = configs.DeviceConfig(
        text=stashed["text"], version=stashed["version"], filename=stashed["filename"]
    )
    data_url = "data:text/plain;base64," + base64.b64encode(config.text.encode()).decode()
    return no_store(
        render_page(
            request,
            ui,
            "gateways/device_registered.html",
            {
                "device": device,
                "config": config,
                "qr": configs.qr_svg(config.text),
                "has_private_key": stashed["has_private_key"],
                "data_url": data_url,
                "missing_gateways": _missing_gateways(device),
            },
            nav="devices",
        )
    )


@member_required
def device_detail(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    device = get_or_404(_devices(ui).select_related("actor"), pk)
    assignments = []
    if device.kind == ClientDevice.Kind.STATIC:
        assignments = list(queries.device_assignments(device))
    missing = sorted(a.site.name for a in assignments if a.gateway_id is None)
    return render_page(
        request,
        ui,
        "gateways/device_detail.html",
        {
            "device": device,
            "assignments": assignments,
            "missing_gateways": missing,
            "never_seen": not any(a.last_handshake_at for a in assignments),
        },
        nav="devices",
    )


def _static_device(ui: UI, pk: str) -> ClientDevice:
    return get_or_404(_devices(ui).filter(kind=ClientDevice.Kind.STATIC), pk)


@member_required
def device_config(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    config = configs.device_config(_static_device(ui, pk))
    response = HttpResponse(config.text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{config.filename}"'
    response["X-Config-Version"] = str(config.version)
    response["Cache-Control"] = "no-store"
    return response


@member_required
def device_qr(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    config = configs.device_config(_static_device(ui, pk))
    response = HttpResponse(configs.qr_svg(config.text), content_type="image/svg+xml")
    response["Cache-Control"] = "no-store"
    return response


def _device_action(request: HttpRequest, ui: UI, pk: str, *, action: str) -> HttpResponse:
    device = _static_device(ui, pk)
    if request.method == "POST":
        if action == "delete":
            services.delete_device(device)
            messages.success(request, f"Device {device.name} deleted.")
            return redirect("device_list")
        if action == "disable":
            services.disable_device(device)
        else:
            services.enable_device(device)
        messages.success(request, f"Device {device.name} {action}d.")
        return redirect("device_detail", device.pk)
    consequence = {
        "delete": "Its config stops working and its tunnel addresses are released.",
        "disable": "Gateways drop it at once; its config stops working until enabled again.",
        "enable": "",
    }[action]
    return confirm_page(
        request,
        ui,
        title=f"{action.title()} {device.name}",
        nav="devices",
        question=f"{action.title()} the device {device.name}?",
        consequence=consequence,
        confirm_label=action.title(),
        cancel_url=reverse("device_detail", args=[device.pk]),
    )


@member_required
def device_new_config(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    """A new key pair and the complete config, shown once (the old key stops working)."""
    device = _static_device(ui, pk)
    if request.method == "POST":
        try:
            registered = services.reissue_static_device_key(device)
        except ValidationFailed as exc:
            messages.error(request, error_text(exc))
            return redirect("device_detail", device.pk)
        return _show_device_config(request, registered)
    return confirm_page(
        request,
        ui,
        title=f"New key and config for {device.name}",
        nav="devices",
        question=f"Generate a new key pair and config for {device.name}?",
        consequence="The complete config, with the new private key, is shown once. The old "
        "config stops working at once; import the new one on the device.",
        confirm_label="New key and config",
        cancel_url=reverse("device_detail", args=[device.pk]),
    )


@member_required
def device_delete(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    return _device_action(request, ui, pk, action="delete")


@admin_required
def device_disable(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    return _device_action(request, ui, pk, action="disable")


@admin_required
def device_enable(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    return _device_action(request, ui, pk, action="enable")


# --- authorizations (audit log) ------------------------------------------------------------------


def filtered_authorizations(ui: UI, form: forms.AuthorizationFilterForm, now: datetime) -> Any:
    if not form.is_valid():
        return queries.authorizations(ui.account).none()
    data = form.cleaned_data
    status = data.get("status")
    qs = (
        queries.active_authorizations(ui.account, now)
        if status == "active"
        else queries.authorizations(ui.account)
    )
    qs = search(qs, data.get("q") or "", ["actor_email", "resource_name", "resource_address"])
    if data.get("actor"):
        qs = qs.filter(actor_email__icontains=data["actor"].strip())
    if data.get("resource"):
        term = data["resource"].strip()
        qs = qs.filter(Q(resource_name__icontains=term) | Q(resource_address__icontains=term))
    if data.get("since"):
        qs = qs.filter(created_at__gte=data["since"])
    if data.get("until"):
        qs = qs.filter(created_at__lt=data["until"])
    if status == "revoked":
        qs = qs.filter(revoked_at__isnull=False)
    elif status == "expired":
        qs = qs.filter(expires_at__lte=now, revoked_at__isnull=True)
    return qs.order_by("-created_at", "-id")


@admin_required
def authorization_list(request: HttpRequest, ui: UI) -> HttpResponse:
    form = forms.AuthorizationFilterForm(request.GET)
    now = timezone.now()
    page = paginate(request, filtered_authorizations(ui, form, now))
    return render_page(
        request,
        ui,
        "gateways/authorization_list.html",
        list_context(request, page, form=form, now=now),
        nav="audit",
    )


def actor_page_context(account_id: uuid.UUID, actor: Actor) -> dict[str, Any]:
    """Provides ``accounts.hooks.actor_page_context``: the devices card of an actor's page."""
    devices = ClientDevice.objects.for_account(account_id).filter(actor=actor).order_by("name")
    return {"devices": devices[:100]}
