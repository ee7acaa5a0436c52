"""Sign-in pages: root (asks for the account), per account (password, email code, OIDC), the
OIDC callback, and the admin pages that manage the account's identity providers.

Views parse HTTP; the services in ``accounts.signin.services`` write."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.mail import EmailMessage
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import Account, Actor, AuthProvider
from accounts.signin import forms, oidc, services, throttle
from accounts.signin.crypto import SecretUnavailable
from accounts.signin.presets import PRESETS
from accounts.signin.sessions import (
    CLIENTS_ONLY_KEY,
    DEFAULT_PORTAL_LIFETIME,
    DEVICE_PATH,
    SESSION_PROVIDER_KEY,
)
from accounts.ui import (
    UI,
    admin_required,
    apply_errors,
    error_text,
    form_page,
    render_page,
)
from firezone_site.errors import ValidationFailed

log = logging.getLogger(__name__)

OIDC_SESSION_KEY = "fz_oidc_pending"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
BACKEND = "accounts.auth.AccountEmailBackend"


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("overview")


def _complete(
    request: HttpRequest, user: User, provider: AuthProvider | None, target: str
) -> HttpResponse:
    """Start the portal session (a new session id) with the provider's portal lifetime."""
    login(request, user, backend=BACKEND)
    lifetime = provider.portal_session_lifetime if provider else DEFAULT_PORTAL_LIFETIME
    request.session.set_expiry(int(lifetime.total_seconds()))
    if provider is not None:
        request.session[SESSION_PROVIDER_KEY] = str(provider.pk)
        if provider.context == AuthProvider.Context.CLIENTS:
            request.session[CLIENTS_ONLY_KEY] = True
            if not target.startswith(DEVICE_PATH):
                target = reverse("device_confirm")
    return redirect(target)


def _for_clients(request: HttpRequest) -> bool:
    """A sign-in on the way to confirming a client (the device page) rather than the portal."""
    return _next(request).startswith(DEVICE_PATH)


def _account_or_404(slug: str) -> Account:
    account = services.account_for_sign_in(slug)
    if account is None:
        raise Http404("No such account.")
    return account


# --- root and per-account pages --------------------------------------------------------------


def root_sign_in(request: HttpRequest) -> HttpResponse:
    """Asks for the account; the password form here still accepts ``slug/email``."""
    if request.user.is_authenticated and request.method == "GET" and "account" not in request.GET:
        return redirect(_next(request))
    slug_form = forms.AccountSlugForm(request.GET if "account" in request.GET else None)
    if slug_form.is_bound and slug_form.is_valid():
        slug = slug_form.cleaned_data["account"].lower()
        if services.account_for_sign_in(slug) is not None:
            url = reverse("account_sign_in", args=[slug])
            if request.GET.get("next"):
                url += "?" + request.GET.urlencode()
            return redirect(url)
        slug_form.add_error("account", "No account with this name.")
    form = forms.PasswordForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid() and form.user is not None:
        return _complete(request, form.user, None, _next(request))
    return render(
        request,
        "accounts/sign_in.html",
        {"form": form, "slug_form": slug_form, "next": request.GET.get("next", "")},
    )


def _account_page(
    request: HttpRequest,
    account: Account,
    *,
    password_form: forms.PasswordForm | None = None,
    email_form: forms.EmailCodeRequestForm | None = None,
    status: int = 200,
) -> HttpResponse:
    providers = services.portal_providers(account, for_clients=_for_clients(request))
    email_provider = next((p for p in providers if p.kind == AuthProvider.Kind.EMAIL), None)
    return render(
        request,
        "accounts/signin/account.html",
        {
            "account": account,
            "form": password_form or forms.PasswordForm(request, account=account),
            "email_form": email_form or forms.EmailCodeRequestForm(),
            "email_provider": email_provider,
            "oidc_providers": [p for p in providers if p.kind in services.OIDC_KINDS],
            "next": request.POST.get("next") or request.GET.get("next", ""),
        },
        status=status,
    )


def account_sign_in(request: HttpRequest, slug: str) -> HttpResponse:
    account = _account_or_404(slug)
    if request.method == "POST":
        form = forms.PasswordForm(request, account=account, data=request.POST)
        if form.is_valid() and form.user is not None:
            return _complete(request, form.user, None, _next(request))
        return _account_page(request, account, password_form=form)
    return _account_page(request, account)


def _send_in_background(message: EmailMessage) -> None:
    """Sending takes as long as the mail server wants; the answer must not (it would tell who
    exists), so the page is answered first and the mail goes out from a thread."""

    def send() -> None:
        try:
            message.send()
        except Exception:
            log.exception("sign-in mail could not be sent")
            return
        if settings.EMAIL_BACKEND.endswith("filebased.EmailBackend"):
            log.info("sign-in mail written to %s (no SMTP configured)", settings.EMAIL_FILE_PATH)

    threading.Thread(target=send, name="signin-mail", daemon=True).start()


@require_POST
def email_request(request: HttpRequest, slug: str) -> HttpResponse:
    account = _account_or_404(slug)
    provider = next(
        (
            p
            for p in services.portal_providers(account, for_clients=_for_clients(request))
            if p.kind == AuthProvider.Kind.EMAIL
        ),
        None,
    )
    if provider is None:
        raise Http404("Email sign-in is not enabled for this account.")
    form = forms.EmailCodeRequestForm(request.POST)
    if not form.is_valid():
        return _account_page(request, account, email_form=form, status=422)
    email = form.cleaned_data["email"].strip().lower()
    ip = throttle.client_ip(request.META)
    attempt = throttle.Attempt(account=account.slug, email=email, ip=ip)
    if throttle.is_locked(attempt):
        form.add_error(None, throttle.lockout_message())
        return _account_page(request, account, email_form=form, status=429)
    result = services.request_email_code(
        provider, email, base_url=request.build_absolute_uri("/").rstrip("/")
    )
    # Mail flooding: past a few codes per address and window nothing more is sent, silently
    # (the answer is the same whether or not the address exists, or was mailed).
    if result.message is not None and throttle.allow_mail(attempt):
        _send_in_background(result.message)
    url = reverse("email_code", args=[account.slug, result.code_id])
    if request.POST.get("next"):
        url += "?" + urlencode({"next": request.POST["next"]})
    return redirect(url)


def email_code(request: HttpRequest, slug: str, code_id: str) -> HttpResponse:
    account = _account_or_404(slug)
    form = forms.EmailCodeForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST" and form.is_valid():
        ip = throttle.client_ip(request.META)
        by_ip = throttle.Attempt(account=account.slug, email="", ip=ip)
        if throttle.is_locked(by_ip):
            form.add_error(None, throttle.lockout_message())
            status = 429
        else:
            result = services.verify_email_code(account, code_id, form.cleaned_data["code"])
            attempt = throttle.Attempt(account=account.slug, email=result.email, ip=ip)
            if result.actor is not None and throttle.is_locked(attempt):
                form.add_error(None, throttle.lockout_message())
                status = 429
            elif result.actor is not None:
                throttle.record_success(attempt)
                user = services.ensure_login_user(result.actor)
                return _complete(request, user, result.provider, _next(request))
            else:
                locked = throttle.record_failure(attempt)
                form.add_error(
                    None,
                    throttle.lockout_message()
                    if locked
                    else "That code is wrong, expired or used up. Ask for a new one.",
                )
                status = 422
    return render(
        request,
        "accounts/signin/code.html",
        {"account": account, "form": form, "next": request.GET.get("next", "")},
        status=status,
    )


# --- OIDC ----------------------------------------------------------------------------------------


def _client_config(request: HttpRequest, provider: AuthProvider) -> oidc.ClientConfig:
    return oidc.ClientConfig(
        issuer=str(provider.config["issuer"]),
        client_id=str(provider.config["client_id"]),
        client_secret=services.client_secret(provider),
        redirect_uri=redirect_uri(request),
        use_userinfo=bool(provider.config.get("use_userinfo")),
        discovery_url=str(provider.config.get("discovery_url", "")),
    )


def redirect_uri(request: HttpRequest) -> str:
    base = settings.FZ_PORTAL_URL.rstrip("/") or request.build_absolute_uri("/").rstrip("/")
    return base + reverse("oidc_callback")


def _refused(request: HttpRequest, message: str, account: Account | None) -> HttpResponse:
    return render(
        request,
        "accounts/signin/refused.html",
        {"message": message, "account": account},
        status=403,
    )


def _begin(
    request: HttpRequest, provider: AuthProvider, *, purpose: str, target: str
) -> HttpResponse:
    try:
        config = _client_config(request, provider)
        url, pending = oidc.begin(config)
    except (oidc.OIDCError, SecretUnavailable) as exc:
        account = services.account_for_sign_in_by_id(provider.account_id)
        return _refused(request, str(exc), account)
    # Keyed by state: two tabs signing in at once each keep their own flow.
    flows = dict(request.session.get(OIDC_SESSION_KEY) or {})
    flows = dict(list(flows.items())[-4:])
    flows[pending.state] = {
        "provider": str(provider.pk),
        "account": str(provider.account_id),
        "nonce": pending.nonce,
        "verifier": pending.verifier,
        "purpose": purpose,
        "next": target,
    }
    request.session[OIDC_SESSION_KEY] = flows
    return redirect(url)


def oidc_start(request: HttpRequest, slug: str, provider_id: str) -> HttpResponse:
    account = _account_or_404(slug)
    provider = services.get_provider(account, provider_id)
    if (
        provider is None
        or provider.disabled_at is not None
        or provider.kind not in services.OIDC_KINDS
        or provider.context
        == (AuthProvider.Context.PORTAL if _for_clients(request) else AuthProvider.Context.CLIENTS)
    ):
        raise Http404("No such provider.")
    return _begin(request, provider, purpose="sign_in", target=_next(request))


def oidc_callback(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    flows = dict(request.session.get(OIDC_SESSION_KEY) or {})
    flow = flows.pop(state, None) if state else None
    request.session[OIDC_SESSION_KEY] = flows
    if flow is None:
        return _refused(
            request,
            "This sign-in response does not match a sign-in started in this browser (state). "
            "Start again from the sign-in page.",
            None,
        )
    account = services.account_for_sign_in_by_id(uuid.UUID(flow["account"]))
    provider = services.get_provider(account, flow["provider"]) if account else None
    if account is None or provider is None:
        return _refused(request, "This provider no longer exists.", account)
    if request.GET.get("error"):
        return _refused(
            request,
            f"The identity provider refused the sign-in ({request.GET['error'][:100]}).",
            account,
        )
    testing = flow["purpose"] == "test"
    if provider.disabled_at is not None and not testing:
        return _refused(request, "This provider is disabled.", account)
    try:
        claims = oidc.finish(
            _client_config(request, provider),
            oidc.Pending(state=state, nonce=flow["nonce"], verifier=flow["verifier"]),
            request.GET.get("code", ""),
        )
    except (oidc.OIDCError, SecretUnavailable) as exc:
        log.info("OIDC sign-in refused for provider %s: %s", provider.pk, exc)
        return _refused(request, str(exc), account)
    if testing:
        return _finish_test(request, account, provider, claims)
    try:
        actor = services.sign_in_identity(provider, claims)
    except services.Refused as exc:
        log.info("OIDC sign-in refused for provider %s: %s", provider.pk, exc)
        return _refused(request, str(exc), account)
    user = services.ensure_login_user(actor)
    return _complete(request, user, provider, flow["next"] or reverse("overview"))


def _finish_test(
    request: HttpRequest, account: Account, provider: AuthProvider, claims: dict[str, Any]
) -> HttpResponse:
    """A test sign-in by the signed-in admin: the provider works; nothing about the session
    changes. Recorded so the provider may be enabled."""
    actor: Actor | None = getattr(request.user, "actor", None)
    if actor is None or actor.account_id != account.pk or actor.type != Actor.Type.ADMIN:
        return _refused(request, "Only an admin of the account can test a provider.", account)
    services.mark_provider_tested(provider, actor)
    email, ok = services.email_from_claims(provider, claims)
    messages.success(
        request,
        f"Test sign-in succeeded: the provider vouched for {email or claims.get('sub')}"
        + ("" if ok else " (email not verified: they could not be matched to a member)")
        + ". You can enable the provider now.",
    )
    return redirect("provider_detail", provider.pk)


# --- admin: identity providers --------------------------------------------------------------------


@admin_required
def provider_list(request: HttpRequest, ui: UI) -> HttpResponse:
    return render_page(
        request,
        ui,
        "accounts/signin/provider_list.html",
        {"providers": services.providers(ui.account), "presets": PRESETS},
        nav="settings",
    )


@admin_required
def provider_new(request: HttpRequest, ui: UI) -> HttpResponse:
    initial = {"kind": request.GET.get("kind", "oidc")}
    form = forms.ProviderForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            provider = services.create_oidc_provider(
                ui.account,
                kind=data["kind"],
                name=data["name"],
                value=data["value"],
                client_id=data["client_id"],
                client_secret=data["client_secret"],
                context=data["context"],
                email_verification=data["email_verification"],
                use_userinfo=data["use_userinfo"],
                discovery_url=data["discovery_url"],
                portal_session_lifetime=timedelta(hours=data["portal_session_hours"]),
                client_session_lifetime=timedelta(days=data["client_session_days"]),
            )
        except ValidationFailed as exc:
            apply_errors(form, exc)
        else:
            messages.success(
                request, f"Provider {provider.name} saved (disabled). Test it, then enable it."
            )
            return redirect("provider_detail", provider.pk)
    return form_page(
        request,
        ui,
        form,
        title="New identity provider",
        cancel_url=reverse("provider_list"),
        nav="settings",
        submit_label="Save provider",
        extra={"redirect_uri": redirect_uri(request)},
        template="accounts/signin/provider_form.html",
    )


def _provider(ui: UI, pk: str) -> AuthProvider:
    provider = services.get_provider(ui.account, pk)
    if provider is None:
        raise Http404("Not found")
    return provider


@admin_required
def provider_detail(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    provider = _provider(ui, pk)
    secret_form = forms.ClientSecretForm(request.POST or None)
    if request.method == "POST" and secret_form.is_valid():
        services.replace_client_secret(provider, secret_form.cleaned_data["client_secret"])
        messages.success(request, "Client secret replaced.")
        return redirect("provider_detail", provider.pk)
    config = provider.config
    return render_page(
        request,
        ui,
        "accounts/signin/provider_detail.html",
        {
            "provider": provider,
            "is_oidc": provider.kind in services.OIDC_KINDS,
            "issuer": config.get("issuer", ""),
            "client_id": config.get("client_id", ""),
            "email_verification": config.get("email_verification", ""),
            "tested_at": config.get("tested_at", ""),
            "redirect_uri": redirect_uri(request),
            "secret_form": secret_form,
        },
        nav="settings",
        status=422 if secret_form.errors else 200,
    )


@admin_required
@require_POST
def provider_test(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    provider = _provider(ui, pk)
    if provider.kind not in services.OIDC_KINDS:
        raise Http404("Only OIDC providers are tested.")
    return _begin(
        request,
        provider,
        purpose="test",
        target=reverse("provider_detail", args=[provider.pk]),
    )


@admin_required
@require_POST
def provider_enable(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    provider = _provider(ui, pk)
    try:
        services.enable_auth_provider(provider)
    except ValidationFailed as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Provider {provider.name} enabled.")
    return redirect("provider_detail", provider.pk)


@admin_required
@require_POST
def provider_disable(request: HttpRequest, ui: UI, pk: str) -> HttpResponse:
    provider = _provider(ui, pk)
    services.disable_auth_provider(provider)
    messages.success(
        request, f"Provider {provider.name} disabled: its sessions and client tokens ended."
    )
    return redirect("provider_detail", provider.pk)


# --- headless clients: device sign-in ------------------------------------------------------------


def _json(data: dict[str, Any], status: int = 200) -> HttpResponse:
    response = JsonResponse(data, status=status)
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
@require_POST
def device_start(request: HttpRequest) -> HttpResponse:
    """RFC 8628 section 3.1-like: the client asks for a device code and a user code."""
    if not throttle.allow_device_start(throttle.client_ip(request.META)):
        response = _json({"error": "slow_down"}, status=429)
        response["Retry-After"] = str(settings.FZ_SIGNIN_WINDOW_S)
        return response
    start = services.start_device_authorization(client_name=request.POST.get("client_name", ""))
    base = request.build_absolute_uri(reverse("device_confirm"))
    return _json(
        {
            "device_code": start.device_code,
            "user_code": start.user_code,
            "verification_uri": base,
            "verification_uri_complete": f"{base}?code={start.user_code}",
            "expires_in": start.expires_in,
            "interval": start.interval,
        }
    )


@csrf_exempt
@require_POST
def device_token(request: HttpRequest) -> HttpResponse:
    """RFC 8628 section 3.4-like: the client polls; the token comes once, after approval."""
    if request.POST.get("grant_type") != DEVICE_GRANT:
        return _json({"error": "unsupported_grant_type"}, status=400)
    result = services.redeem_device_code(request.POST.get("device_code", ""))
    if result.token is None:
        return _json({"error": result.error}, status=400)
    token = result.token.token
    expires_in = int((token.expires_at - timezone.now()).total_seconds()) if token.expires_at else 0
    return _json(
        {"access_token": result.token.secret, "token_type": "Bearer", "expires_in": expires_in}
    )


@csrf_exempt
@require_POST
def token_introspect(request: HttpRequest) -> HttpResponse:
    """RFC 7662-like, for a client to check its own session token (Authorization: Bearer)."""
    header = request.headers.get("Authorization", "")
    secret = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    token = services.introspect_client_token(secret, request.META.get("REMOTE_ADDR"))
    if token is None or token.actor is None:
        return _json({"active": False})
    return _json(
        {
            "active": True,
            "token_type": "client",
            "account": token.account.slug,
            "actor": token.actor.email,
            "exp": int(token.expires_at.timestamp()) if token.expires_at else None,
        }
    )


def device_confirm(request: HttpRequest) -> HttpResponse:
    """The signed-in person confirms the code their client shows. Sessions from clients-only
    providers reach this page (and no other of the portal)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    actor: Actor | None = getattr(request.user, "actor", None)
    if (
        actor is None
        or actor.disabled_at is not None
        or actor.account.disabled_at is not None
        or actor.type not in services.SIGN_IN_TYPES
    ):
        raise DjangoPermissionDenied("This sign-in has no active user.")
    ui = UI(actor=actor, account=actor.account)
    form = forms.DeviceCodeForm(
        request.POST if request.method == "POST" else None,
        initial={"code": request.GET.get("code", "")},
    )
    status = 200
    done = ""
    if request.method == "POST" and form.is_valid():
        attempt = throttle.Attempt(
            account=ui.account.slug, email="", ip=throttle.client_ip(request.META)
        )
        approve = request.POST.get("decision") != "deny"
        provider_id = request.session.get(SESSION_PROVIDER_KEY)
        if throttle.is_locked(attempt):
            form.add_error(None, throttle.lockout_message())
            status = 429
        elif not (
            refusal := services.decide_device_authorization(
                form.cleaned_data["code"],
                ui.actor,
                uuid.UUID(provider_id) if provider_id else None,
                approve=approve,
            )
        ):
            done = "approved" if approve else "denied"
        else:
            if refusal == services.NO_DEVICE_WAITING:
                throttle.record_failure(attempt)
            form.add_error("code", refusal)
            status = 422
    pending = services.pending_device_authorization(form["code"].value() or "")
    return render_page(
        request,
        ui,
        "accounts/signin/device.html",
        {"form": form, "done": done, "pending": pending},
        nav="devices",
        status=status,
    )
