"""Every sign-in write: one-time codes, identities, provider configuration, login users.

Sign-in happens before anyone is known, so the lookups here start from the account the URL
names (``account_for_sign_in``) and every query after that is scoped to it.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Actor, AuthProvider, Identity, Token
from accounts.signin import crypto
from accounts.signin.models import DeviceAuthorization, SignInCode
from accounts.signin.presets import PRESETS, issuer_for
from accounts.signin.sessions import SESSION_PROVIDER_KEY
from firezone_site.errors import ValidationFailed, clean_name

log = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a phone, typed back
CODE_LENGTH = 6
CODE_TTL = timedelta(minutes=15)
CODE_MAX_ATTEMPTS = 3
SIGN_IN_TYPES = (Actor.Type.USER, Actor.Type.ADMIN)
OIDC_KINDS = (
    AuthProvider.Kind.OIDC,
    AuthProvider.Kind.GOOGLE,
    AuthProvider.Kind.OKTA,
    AuthProvider.Kind.ENTRA,
)
_DUMMY_HASH = make_password(secrets.token_urlsafe(16))


def account_for_sign_in(slug: str) -> Account | None:
    return Account.objects.filter(slug=slug.lower(), disabled_at__isnull=True).first()


def slug_for_email(email: str) -> str:
    """The account slug an email belongs to when it belongs to exactly one (root sign-in)."""
    slugs = list(
        Actor.objects.filter(email=email.strip().lower()).values_list("account__slug", flat=True)[
            :2
        ]
    )
    return slugs[0] if len(slugs) == 1 else ""


def portal_providers(account: Account, *, for_clients: bool = False) -> list[AuthProvider]:
    """The enabled providers for a portal sign-in, or (``for_clients``) a client sign-in."""
    wanted = AuthProvider.Context.CLIENTS if for_clients else AuthProvider.Context.PORTAL
    return list(
        AuthProvider.objects.for_account(account)
        .filter(disabled_at__isnull=True, context__in=(wanted, AuthProvider.Context.BOTH))
        .order_by("name")
    )


def get_provider(account: Account, provider_id: uuid.UUID | str) -> AuthProvider | None:
    try:
        key = uuid.UUID(str(provider_id))
    except ValueError:
        return None
    return AuthProvider.objects.for_account(account).filter(pk=key).first()


def providers(account: Account) -> list[AuthProvider]:
    return list(AuthProvider.objects.for_account(account).order_by("name"))


@transaction.atomic
def ensure_login_user(actor: Actor) -> User:
    """The Django user a session is bound to; actors who never had a password get one with an
    unusable password (sessions only)."""
    actor = Actor.objects.select_related("user").get(pk=actor.pk, account_id=actor.account_id)
    if actor.user is not None:
        return actor.user
    user = User(username=f"{actor.account_id}:{actor.email or actor.pk}", email=actor.email)
    user.set_unusable_password()
    user.save()
    actor.user = user
    actor.save(update_fields=["user"])
    return user


# --- email one-time codes ----------------------------------------------------------------------


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


@dataclass(frozen=True)
class CodeRequest:
    code_id: uuid.UUID  # a random id when nobody matched, so the answer looks the same
    message: EmailMessage | None  # to send after the transaction (None: nobody to mail)


@transaction.atomic
def request_email_code(provider: AuthProvider, email: str, *, base_url: str) -> CodeRequest:
    """Mail a code (and a link to the page that takes it) to the active actor with this email.

    Does the same work (code generation, slow hash) whether or not the email exists."""
    email = (email or "").strip().lower()
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    code_hash = make_password(code)
    actor = (
        Actor.objects.for_account(provider.account_id)
        .filter(email=email, disabled_at__isnull=True, type__in=SIGN_IN_TYPES)
        .select_related("account")
        .first()
        if email
        else None
    )
    if actor is None:
        return CodeRequest(code_id=uuid.uuid4(), message=None)
    now = timezone.now()
    # One live code per actor: asking again burns the previous one.
    SignInCode.objects.for_account(provider.account_id).filter(
        actor=actor, used_at__isnull=True
    ).update(used_at=now)
    row = SignInCode.objects.create(
        account_id=provider.account_id,
        actor=actor,
        provider=provider,
        code_hash=code_hash,
        expires_at=now + CODE_TTL,
    )
    link = f"{base_url}/{actor.account.slug}/sign-in/email/{row.pk}#code={code}"
    body = (
        f"Your sign-in code for {actor.account.name} is:\n\n    {code}\n\n"
        f"Or open this link to sign in:\n{link}\n\n"
        "The code is valid for 15 minutes. If you did not ask for it, ignore this mail.\n"
    )
    message = EmailMessage(
        subject=f"Sign-in code for {actor.account.name}",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[actor.email],
    )
    return CodeRequest(code_id=row.pk, message=message)


@dataclass(frozen=True)
class CodeResult:
    actor: Actor | None
    provider: AuthProvider | None
    email: str  # the actor's email when the code exists (for the brute-force key), else ""


@transaction.atomic
def verify_email_code(account: Account, code_id: uuid.UUID | str, code: str) -> CodeResult:
    """Spend one attempt on the code: the actor when it is right, unexpired and unspent."""
    try:
        key = uuid.UUID(str(code_id))
    except ValueError:
        key = uuid.uuid4()
    row = (
        SignInCode.objects.for_account(account)
        .select_for_update()
        .select_related("actor", "provider")
        .filter(pk=key)
        .first()
    )
    code = normalize_code(code)
    if row is None:
        check_password(code, _DUMMY_HASH)
        return CodeResult(actor=None, provider=None, email="")
    now = timezone.now()
    usable = row.used_at is None and row.expires_at > now and row.attempts < CODE_MAX_ATTEMPTS
    right = check_password(code, row.code_hash)
    actor = row.actor
    if usable and right:
        row.used_at = now
        row.save(update_fields=["used_at"])
        active = (
            actor.disabled_at is None
            and row.provider.disabled_at is None
            and not account.is_disabled
        )
        return CodeResult(actor=actor if active else None, provider=row.provider, email=actor.email)
    if usable:
        row.attempts += 1
        if row.attempts >= CODE_MAX_ATTEMPTS:
            row.used_at = now  # burned
        row.save(update_fields=["attempts", "used_at"])
    return CodeResult(actor=None, provider=None, email=actor.email)


@transaction.atomic
def delete_expired_codes() -> int:
    cutoff = timezone.now() - timedelta(days=1)
    deleted, _ = SignInCode.objects.filter(expires_at__lte=cutoff).delete()
    devices, _ = DeviceAuthorization.objects.filter(expires_at__lte=cutoff).delete()
    return deleted + devices


# --- OIDC providers ----------------------------------------------------------------------------


@transaction.atomic
def create_oidc_provider(
    account: Account,
    *,
    kind: str,
    name: str,
    value: str,
    client_id: str,
    client_secret: str,
    context: str = AuthProvider.Context.BOTH,
    email_verification: str | None = None,
    use_userinfo: bool = False,
    discovery_url: str = "",
    portal_session_lifetime: timedelta = timedelta(hours=8),
    client_session_lifetime: timedelta = timedelta(days=7),
) -> AuthProvider:
    """A new OIDC provider, disabled until an admin has signed in through it once (test)."""
    if kind not in PRESETS:
        raise ValidationFailed({"kind": f"Choose one of: {', '.join(PRESETS)}."})
    preset = PRESETS[kind]
    errors: dict[str, str] = {}
    if preset.value_label and not value.strip():
        errors["value"] = "This field is required."
    if not client_id.strip():
        errors["client_id"] = "This field is required."
    if not client_secret:
        errors["client_secret"] = "This field is required."
    verification = email_verification or preset.email_verification
    if kind != AuthProvider.Kind.OIDC:
        verification = preset.email_verification  # the vendor presets are not negotiable
    if verification not in ("none", "claim"):
        errors["email_verification"] = "Choose none or claim."
    issuer = issuer_for(kind, value)
    if not issuer.startswith(("https://", "http://")):
        errors["value"] = "The issuer is a URL starting with https://."
    if discovery_url.strip() and not discovery_url.strip().startswith(("https://", "http://")):
        errors["discovery_url"] = "The discovery document URL starts with https://."
    if not timedelta(minutes=5) <= portal_session_lifetime <= timedelta(hours=24):
        errors["portal_session_lifetime"] = "Portal sessions last between 5 minutes and 24 hours."
    if errors:
        raise ValidationFailed(errors)
    provider = account_services.create_auth_provider(
        account,
        name=clean_name(name),
        kind=kind,
        context=context,
        client_session_lifetime=client_session_lifetime,
        portal_session_lifetime=portal_session_lifetime,
        config={
            "issuer": issuer,
            "client_id": client_id.strip(),
            "client_secret_enc": crypto.encrypt(client_secret),
            "email_verification": verification,
            "subject_claim": preset.subject_claim,
            "email_claims": list(preset.email_claims),
            "use_userinfo": use_userinfo,
            "discovery_url": discovery_url.strip(),
        },
    )
    AuthProvider.objects.filter(pk=provider.pk).update(disabled_at=timezone.now())
    provider.refresh_from_db()
    return provider


@transaction.atomic
def replace_client_secret(provider: AuthProvider, client_secret: str) -> None:
    if not client_secret:
        raise ValidationFailed({"client_secret": "This field is required."})
    provider = AuthProvider.objects.select_for_update().get(
        pk=provider.pk, account_id=provider.account_id
    )
    provider.config = {**provider.config, "client_secret_enc": crypto.encrypt(client_secret)}
    provider.save(update_fields=["config"])


@transaction.atomic
def mark_provider_tested(provider: AuthProvider, actor: Actor) -> None:
    provider = AuthProvider.objects.select_for_update().get(
        pk=provider.pk, account_id=provider.account_id
    )
    provider.config = {
        **provider.config,
        "tested_at": timezone.now().isoformat(),
        "tested_by": str(actor.pk),
    }
    provider.save(update_fields=["config"])


@transaction.atomic
def enable_auth_provider(provider: AuthProvider) -> None:
    provider = AuthProvider.objects.select_for_update().get(
        pk=provider.pk, account_id=provider.account_id
    )
    if provider.kind in OIDC_KINDS and not provider.config.get("tested_at"):
        raise ValidationFailed(
            {"provider": "Sign in with this provider once (Test) before enabling it."}
        )
    AuthProvider.objects.filter(pk=provider.pk, account_id=provider.account_id).update(
        disabled_at=None
    )


def disable_auth_provider(provider: AuthProvider) -> None:
    account_services.disable_auth_provider(provider)


# --- OIDC identities: no just-in-time provisioning ----------------------------------------------


class Refused(Exception):
    """The provider vouched for someone this account does not know; nothing was written."""


def _email_from(provider: AuthProvider, claims: dict[str, Any]) -> tuple[str, bool]:
    """The address the claims carry and whether the provider's rules let it identify someone."""
    email = ""
    for name in provider.config.get("email_claims") or ["email"]:
        value = claims.get(name)
        if isinstance(value, str) and "@" in value:
            email = value.strip().lower()
            break
    if provider.config.get("email_verification", "claim") == "claim":
        verified = claims.get("email_verified") in (True, "true")
        return email, verified
    return email, bool(email)


@transaction.atomic
def sign_in_identity(provider: AuthProvider, claims: dict[str, Any]) -> Actor:
    """Map verified claims to an existing active actor and upsert its identity.

    By (issuer, subject) first; the first time, by the verified email of an active user or admin.
    Raises :class:`Refused` with a message for the person; nothing is written then."""
    issuer = str(provider.config["issuer"])
    subject = str(claims.get(provider.config.get("subject_claim") or "sub") or claims["sub"])
    email, email_ok = _email_from(provider, claims)
    identity = (
        Identity.objects.for_account(provider.account_id)
        .select_related("actor")
        .filter(issuer=issuer, subject=subject)
        .first()
    )
    actor: Actor | None = identity.actor if identity is not None else None
    if actor is None:
        if not email:
            raise Refused(
                "Your identity provider sent no email address, so you cannot be matched to "
                "an account member. Ask an administrator to check the provider's scopes."
            )
        if not email_ok:
            raise Refused(
                "Your identity provider did not confirm your email address "
                "(email_verified), so it cannot be matched to an account member."
            )
        actor = (
            Actor.objects.for_account(provider.account_id)
            .filter(email=email, type__in=SIGN_IN_TYPES)
            .first()
        )
    if actor is None:
        raise Refused(
            "You are not a member of this account. Ask an administrator to add you; "
            "accounts are not created on first sign-in."
        )
    if actor.disabled_at is not None:
        raise Refused("Your access to this account is disabled.")
    safe_claims = {
        k: v
        for k, v in claims.items()
        if k in ("sub", "oid", "email", "email_verified", "name", "preferred_username", "iss")
    }
    if identity is None:
        Identity.objects.create(
            account_id=provider.account_id,
            actor=actor,
            provider=provider,
            issuer=issuer,
            subject=subject,
            email=email,
            claims=safe_claims,
        )
    else:
        Identity.objects.filter(pk=identity.pk).update(
            email=email or identity.email, claims=safe_claims, provider=provider
        )
    return actor


def client_secret(provider: AuthProvider) -> str:
    return crypto.decrypt(str(provider.config.get("client_secret_enc", "")))


def account_for_sign_in_by_id(account_id: uuid.UUID | str) -> Account | None:
    return Account.objects.filter(pk=account_id, disabled_at__isnull=True).first()


def email_from_claims(provider: AuthProvider, claims: dict[str, Any]) -> tuple[str, bool]:
    return _email_from(provider, claims)


def end_provider_sessions(provider_id: uuid.UUID) -> int:
    """Delete every live session signed in through the provider; returns how many."""
    ended = 0
    wanted = str(provider_id)
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get(SESSION_PROVIDER_KEY) == wanted:
            session.delete()
            ended += 1
    return ended


# --- headless clients: device authorization (RFC 8628-like) --------------------------------------

DEVICE_CODE_TTL = timedelta(minutes=10)
DEVICE_POLL_INTERVAL_S = 2
USER_CODE_LENGTH = 8
DEFAULT_CLIENT_LIFETIME = timedelta(days=7)
NO_DEVICE_WAITING = "No client is waiting with this code (or it expired)."


def _sha256(value: str) -> str:
    return account_services.hash_secret(value)


def format_user_code(code: str) -> str:
    code = normalize_code(code)
    return f"{code[:4]}-{code[4:]}" if len(code) == USER_CODE_LENGTH else code


@dataclass(frozen=True)
class DeviceStart:
    device_code: str  # the client's secret: redeemed for the token
    user_code: str  # typed (or followed) by the person in a browser
    expires_in: int
    interval: int


@transaction.atomic
def start_device_authorization(*, client_name: str = "") -> DeviceStart:
    device_code = secrets.token_urlsafe(32)
    user_code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
    DeviceAuthorization.objects.create(
        device_code_hash=_sha256(device_code),
        user_code_hash=_sha256(user_code),
        client_name=client_name.strip()[:255],
        expires_at=timezone.now() + DEVICE_CODE_TTL,
    )
    return DeviceStart(
        device_code=device_code,
        user_code=format_user_code(user_code),
        expires_in=int(DEVICE_CODE_TTL.total_seconds()),
        interval=DEVICE_POLL_INTERVAL_S,
    )


def pending_device_authorization(user_code: str) -> DeviceAuthorization | None:
    """The unexpired, undecided sign-in a user code names (for the confirmation page)."""
    return DeviceAuthorization.objects.filter(
        user_code_hash=_sha256(normalize_code(user_code)),
        expires_at__gt=timezone.now(),
        approved_at__isnull=True,
        denied_at__isnull=True,
    ).first()


@transaction.atomic
def decide_device_authorization(
    user_code: str, actor: Actor, provider_id: uuid.UUID | None, *, approve: bool
) -> str:
    """The signed-in actor approves (or denies) the client that shows this user code.

    Returns "" when decided, else why not (the message for the page)."""
    row = (
        DeviceAuthorization.objects.select_for_update()
        .filter(
            user_code_hash=_sha256(normalize_code(user_code)),
            expires_at__gt=timezone.now(),
            approved_at__isnull=True,
            denied_at__isnull=True,
        )
        .first()
    )
    if row is None or actor.disabled_at is not None or actor.type not in SIGN_IN_TYPES:
        return NO_DEVICE_WAITING
    provider = (
        AuthProvider.objects.for_account(actor.account_id)
        .filter(pk=provider_id, disabled_at__isnull=True)
        .first()
        if provider_id
        else None
    )
    if provider_id and provider is None:
        return "The provider you signed in with is disabled: sign in again."
    if approve and provider is not None and provider.context == AuthProvider.Context.PORTAL:
        return (
            f"{provider.name} signs people in to the portal only, not clients: "
            "sign in with another provider to sign in a client."
        )
    now = timezone.now()
    row.account_id = actor.account_id
    row.actor = actor
    row.provider = provider
    if approve:
        row.approved_at = now
    else:
        row.denied_at = now
    row.save(update_fields=["account", "actor", "provider", "approved_at", "denied_at"])
    return ""


@dataclass(frozen=True)
class DeviceTokenResult:
    error: str = ""  # RFC 8628 error code when no token (authorization_pending, ...)
    token: account_services.IssuedToken | None = None


@transaction.atomic
def redeem_device_code(device_code: str) -> DeviceTokenResult:
    """The client's poll: a client session token once, after approval."""
    row = (
        DeviceAuthorization.objects.select_for_update(of=("self",))
        .select_related("actor", "provider", "account")
        .filter(device_code_hash=_sha256(device_code or ""))
        .first()
    )
    now = timezone.now()
    if row is None or row.redeemed_at is not None:
        return DeviceTokenResult(error="invalid_grant")
    if row.denied_at is not None:
        return DeviceTokenResult(error="access_denied")
    if row.approved_at is None:
        if row.expires_at <= now:
            return DeviceTokenResult(error="expired_token")
        too_soon = row.last_polled_at is not None and (now - row.last_polled_at) < timedelta(
            seconds=DEVICE_POLL_INTERVAL_S - 0.5
        )
        row.last_polled_at = now
        row.save(update_fields=["last_polled_at"])
        return DeviceTokenResult(error="slow_down" if too_soon else "authorization_pending")
    actor = row.actor
    if (
        actor is None
        or row.account is None
        or actor.disabled_at is not None
        or row.account.is_disabled
        or (row.provider is not None and row.provider.disabled_at is not None)
    ):
        return DeviceTokenResult(error="access_denied")
    lifetime = row.provider.client_session_lifetime if row.provider else DEFAULT_CLIENT_LIFETIME
    issued = account_services.create_token(
        row.account,
        kind=Token.Kind.CLIENT,
        name=row.client_name or "client sign-in",
        actor=actor,
        expires_at=now + lifetime,
    )
    if row.provider is not None:
        Token.objects.filter(pk=issued.token.pk).update(provider=row.provider)
        issued.token.provider = row.provider
    row.redeemed_at = now
    row.save(update_fields=["redeemed_at"])
    return DeviceTokenResult(token=issued)


def introspect_client_token(secret: str, remote_ip: str | None) -> Token | None:
    return account_services.use_token(secret, kind=Token.Kind.CLIENT, remote_ip=remote_ip)
