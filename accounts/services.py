"""Every write to accounts, actors, groups, memberships, providers, directories and tokens.

Each public function is one transaction. ``check_*`` helpers validate before anything is written;
database constraints back them up and surface as :class:`ValidationFailed`, never IntegrityError.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import Permission, User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from accounts import hooks
from accounts.models import Account, Actor, AuthProvider, Directory, Group, Membership, Token
from firezone_site.errors import (
    NotFound,
    PermissionDenied,
    ValidationFailed,
    clean_name,
    integrity_errors_as_validation,
)
from firezone_site.events import AccessChanged, publish

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
GATEWAY_TOKEN_GRACE = timedelta(hours=4)
TOKEN_PREFIX = {
    Token.Kind.GATEWAY: "fzg",
    Token.Kind.CLIENT: "fzc",
    Token.Kind.API: "fza",
    Token.Kind.SIGN_IN: "fzs",
}

_CONSTRAINTS = {
    "actor_email_unique_per_account": ("email", "An actor with this email already exists."),
    "group_name_unique": ("name", "A group with this name already exists."),
    "membership_unique": ("actor", "This actor is already a member of the group."),
    "provider_name_unique": ("name", "An auth provider with this name already exists."),
    "directory_name_unique": ("name", "A directory with this name already exists."),
    "identity_unique_per_issuer": ("subject", "This identity already exists."),
    "provider_client_session_1h_90d": (
        "client_session_lifetime",
        "Client session lifetime must be between 1 hour and 90 days.",
    ),
}


def _clean_email(value: str, *, required: bool) -> str:
    value = (value or "").strip().lower()
    if not value:
        if required:
            raise ValidationFailed({"email": "This field is required."})
        return ""
    try:
        validate_email(value)
    except DjangoValidationError as exc:
        raise ValidationFailed({"email": "Enter a valid email address."}) from exc
    return value


# --- accounts --------------------------------------------------------------------------------


@transaction.atomic
def create_account(*, name: str, slug: str) -> Account:
    name = clean_name(name)
    slug = (slug or "").strip().lower()
    if not SLUG_RE.match(slug):
        raise ValidationFailed(
            {"slug": "Use 1-100 lowercase letters, digits and hyphens, not starting with a hyphen."}
        )
    if Account.objects.filter(slug=slug).exists():
        raise ValidationFailed({"slug": "This slug is taken."})
    with integrity_errors_as_validation({"slug": ("slug", "This slug is taken.")}):
        account = Account.objects.create(name=name, slug=slug)
    Group.objects.create(account=account, name=Group.EVERYONE, kind=Group.Kind.MANAGED)
    return account


@transaction.atomic
def rename_account(account: Account, *, name: str) -> Account:
    name = clean_name(name)
    Account.objects.filter(pk=account.pk).update(name=name)
    account.name = name
    return account


@transaction.atomic
def disable_account(account: Account) -> None:
    Account.objects.filter(pk=account.pk).update(disabled_at=timezone.now())
    account.refresh_from_db()
    publish(AccessChanged(account_id=account.pk, reason="account_disabled"))


def everyone_group(account: Account | uuid.UUID) -> Group:
    group: Group = Group.objects.for_account(account).get(
        name=Group.EVERYONE, kind=Group.Kind.MANAGED
    )
    return group


# --- actors ------------------------------------------------------------------------------------


def _in_everyone(actor_type: str) -> bool:
    return actor_type in (Actor.Type.USER, Actor.Type.ADMIN)


def _sync_everyone(actor: Actor) -> uuid.UUID | None:
    """Keep the managed Everyone group equal to the account's users and admins.

    Returns the group's id when a membership was removed (the caller publishes the narrowing).
    """
    group = everyone_group(actor.account_id)
    should = _in_everyone(actor.type) and actor.disabled_at is None
    if should:
        Membership.objects.get_or_create(account_id=actor.account_id, group=group, actor=actor)
        return None
    deleted, _ = Membership.objects.filter(group=group, actor=actor).delete()
    return group.pk if deleted else None


def _username(account: Account | uuid.UUID, email: str) -> str:
    account_id = account if isinstance(account, uuid.UUID) else account.pk
    return f"{account_id}:{email}"


@transaction.atomic
def create_actor(
    account: Account,
    *,
    email: str,
    name: str,
    type: str = Actor.Type.USER,
    password: str | None = None,
    staff: bool = False,
) -> Actor:
    if type not in Actor.Type.values:
        raise ValidationFailed({"type": f"Choose one of: {', '.join(Actor.Type.values)}."})
    name = clean_name(name)
    email = _clean_email(email, required=type in (Actor.Type.USER, Actor.Type.ADMIN))
    if email and Actor.objects.for_account(account).filter(email=email).exists():
        raise ValidationFailed({"email": "An actor with this email already exists."})
    user = None
    if password is not None:
        if not email:
            raise ValidationFailed({"email": "Local sign-in needs an email."})
        if len(password) < 12:
            raise ValidationFailed({"password": "Use at least 12 characters."})
        user = _create_user(account, email, password, staff=staff)
    with integrity_errors_as_validation(_CONSTRAINTS):
        actor = Actor.objects.create(account=account, email=email, name=name, type=type, user=user)
    _sync_everyone(actor)
    return actor


# Staff of an account may look at its tenant data in the Django admin (read-only, scoped to the
# account: see firezone_site.readonly_admin), nothing more.
STAFF_VIEW_APPS = ("accounts", "policies", "gateways")


def _create_user(account: Account, email: str, password: str, *, staff: bool) -> User:
    # Never a superuser: that is a power across every account, for the operator to grant
    # (``manage.py createsuperuser``), not something an account's admin gets by default.
    user = User(username=_username(account, email), email=email, is_staff=staff)
    user.set_password(password)
    user.save()
    if staff:
        user.user_permissions.set(
            Permission.objects.filter(
                content_type__app_label__in=STAFF_VIEW_APPS, codename__startswith="view_"
            )
        )
    return user


@transaction.atomic
def set_password(actor: Actor, password: str) -> None:
    if len(password) < 12:
        raise ValidationFailed({"password": "Use at least 12 characters."})
    if actor.user is None:
        if not actor.email:
            raise ValidationFailed({"email": "Local sign-in needs an email."})
        actor.user = _create_user(actor.account, actor.email, password, staff=False)
        actor.save(update_fields=["user"])
    else:
        actor.user.set_password(password)
        actor.user.save(update_fields=["password"])


@transaction.atomic
def update_actor(
    actor: Actor,
    *,
    name: str | None = None,
    email: str | None = None,
    type: str | None = None,
    password: str | None = None,
) -> Actor:
    actor = Actor.objects.select_for_update().get(pk=actor.pk, account_id=actor.account_id)
    if name is not None:
        actor.name = clean_name(name)
    if email is not None:
        clean = _clean_email(email, required=actor.type in (Actor.Type.USER, Actor.Type.ADMIN))
        taken = Actor.objects.for_account(actor.account_id).filter(email=clean).exclude(pk=actor.pk)
        if clean and taken.exists():
            raise ValidationFailed({"email": "An actor with this email already exists."})
        if not clean and actor.user is not None:
            raise ValidationFailed(
                {"email": "An actor who signs in with a password needs an email."}
            )
        actor.email = clean
        if actor.user is not None:
            actor.user.username = _username(actor.account_id, clean)
            actor.user.email = clean
            actor.user.save(update_fields=["username", "email"])
    if type is not None:
        if type not in Actor.Type.values:
            raise ValidationFailed({"type": f"Choose one of: {', '.join(Actor.Type.values)}."})
        if actor.type == Actor.Type.ADMIN and type != Actor.Type.ADMIN:
            _check_not_last_admin(actor)
        actor.type = type
    with integrity_errors_as_validation(_CONSTRAINTS):
        actor.save()
    left = _sync_everyone(actor)
    if left is not None:
        publish(
            AccessChanged(
                account_id=actor.account_id,
                reason="membership_removed",
                actor_ids=frozenset({actor.pk}),
                group_ids=frozenset({left}),
            )
        )
    if password:
        set_password(actor, password)
    return actor


def _check_not_last_admin(actor: Actor) -> None:
    admins = Actor.objects.for_account(actor.account_id).filter(
        type=Actor.Type.ADMIN, disabled_at__isnull=True
    )
    if not admins.exclude(pk=actor.pk).exists():
        raise ValidationFailed({"type": "The account needs at least one active admin."})


def check_may_manage(requester: Actor, target: Actor) -> None:
    """An account admin manages the account's actors, except Django staff: those hold powers
    across accounts, so only they themselves or a superuser may change or remove them."""
    if requester.account_id != target.account_id:
        raise NotFound("No such actor.")
    user = target.user
    if user is None or not (user.is_staff or user.is_superuser) or requester.pk == target.pk:
        return
    if requester.user is not None and requester.user.is_superuser:
        return
    raise PermissionDenied("This actor is Django staff; only they or a superuser can change them.")


@transaction.atomic
def disable_actor(actor: Actor) -> None:
    """Disable an actor: revokes its tokens and sessions and (after commit) its access."""
    actor = Actor.objects.select_for_update().get(pk=actor.pk, account_id=actor.account_id)
    if actor.disabled_at is not None:
        return
    if actor.type == Actor.Type.ADMIN:
        _check_not_last_admin(actor)
    now = timezone.now()
    actor.disabled_at = now
    actor.save(update_fields=["disabled_at"])
    token_ids = frozenset(
        Token.objects.for_account(actor.account_id)
        .filter(actor=actor, revoked_at__isnull=True)
        .values_list("pk", flat=True)
    )
    Token.objects.filter(pk__in=token_ids).update(revoked_at=now)
    if actor.user is not None:
        actor.user.is_active = False
        actor.user.save(update_fields=["is_active"])
        _end_sessions(actor.user.pk)
    _sync_everyone(actor)
    publish(
        AccessChanged(
            account_id=actor.account_id,
            reason="actor_disabled",
            actor_ids=frozenset({actor.pk}),
            token_ids=token_ids,
        )
    )


def _end_sessions(user_id: int) -> None:
    from django.contrib.sessions.models import Session

    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == str(user_id):
            session.delete()


@transaction.atomic
def enable_actor(actor: Actor) -> None:
    actor = Actor.objects.select_for_update().get(pk=actor.pk, account_id=actor.account_id)
    actor.disabled_at = None
    actor.save(update_fields=["disabled_at"])
    if actor.user is not None:
        actor.user.is_active = True
        actor.user.save(update_fields=["is_active"])
    _sync_everyone(actor)


@transaction.atomic
def delete_actor(actor: Actor) -> None:
    actor = Actor.objects.select_for_update().get(pk=actor.pk, account_id=actor.account_id)
    if actor.type == Actor.Type.ADMIN and actor.disabled_at is None:
        _check_not_last_admin(actor)
    # Devices go first (the layer that keeps them tells their gateways and frees their tunnel
    # addresses); then the actor's remaining flows are revoked while they still name the actor.
    hooks.delete_actor_devices(actor)
    revoked = hooks.revoke_flows(actor.account_id, actor_ids={actor.pk}, reason="actor_deleted")
    event = AccessChanged(
        account_id=actor.account_id,
        reason="actor_deleted",
        actor_ids=frozenset({actor.pk}),
        authorization_ids=revoked,
    )
    user = actor.user
    actor.delete()
    if user is not None:
        _end_sessions(user.pk)
        user.delete()
    publish(event)


# --- groups and memberships --------------------------------------------------------------------


@transaction.atomic
def create_group(account: Account, *, name: str) -> Group:
    name = clean_name(name)
    if Group.objects.for_account(account).filter(name=name).exists():
        raise ValidationFailed({"name": "A group with this name already exists."})
    with integrity_errors_as_validation(_CONSTRAINTS):
        return Group.objects.create(account=account, name=name, kind=Group.Kind.STATIC)


def _check_static(group: Group) -> None:
    if group.is_managed:
        raise PermissionDenied(f"The {group.name} group is managed: it cannot be changed by hand.")


@transaction.atomic
def rename_group(group: Group, *, name: str) -> Group:
    _check_static(group)
    name = clean_name(name)
    taken = Group.objects.for_account(group.account_id).filter(name=name).exclude(pk=group.pk)
    if taken.exists():
        raise ValidationFailed({"name": "A group with this name already exists."})
    group.name = name
    with integrity_errors_as_validation(_CONSTRAINTS):
        group.save(update_fields=["name"])
    return group


@transaction.atomic
def delete_group(group: Group) -> None:
    _check_static(group)
    event = AccessChanged(
        account_id=group.account_id,
        reason="group_deleted",
        group_ids=frozenset({group.pk}),
        actor_ids=frozenset(group.memberships.values_list("actor_id", flat=True)),
        policy_ids=frozenset(group.policies.values_list("pk", flat=True)),
    )
    group.delete()
    publish(event)


@transaction.atomic
def add_member(group: Group, actor: Actor) -> Membership:
    _check_static(group)
    if actor.account_id != group.account_id:
        raise NotFound("No such actor.")
    existing = Membership.objects.filter(group=group, actor=actor).first()
    if existing is not None:
        return existing
    with integrity_errors_as_validation(_CONSTRAINTS):
        membership = Membership.objects.create(
            account_id=group.account_id, group=group, actor=actor
        )
    publish(
        AccessChanged(
            account_id=group.account_id,
            reason="membership_added",
            narrowed=False,
            group_ids=frozenset({group.pk}),
            actor_ids=frozenset({actor.pk}),
        )
    )
    return membership


@transaction.atomic
def remove_member(group: Group, actor: Actor) -> None:
    _check_static(group)
    deleted, _ = Membership.objects.filter(
        account_id=group.account_id, group=group, actor=actor
    ).delete()
    if deleted:
        publish(
            AccessChanged(
                account_id=group.account_id,
                reason="membership_removed",
                group_ids=frozenset({group.pk}),
                actor_ids=frozenset({actor.pk}),
            )
        )


@transaction.atomic
def set_members(group: Group, actors: list[Actor]) -> None:
    """Make ``actors`` the group's exact member list (one transaction, one event)."""
    _check_static(group)
    wanted = {a.pk for a in actors if a.account_id == group.account_id}
    current = set(group.memberships.values_list("actor_id", flat=True))
    removed = current - wanted
    Membership.objects.filter(group=group, actor_id__in=removed).delete()
    Membership.objects.bulk_create(
        [Membership(account_id=group.account_id, group=group, actor_id=a) for a in wanted - current]
    )
    if removed or wanted - current:
        publish(
            AccessChanged(
                account_id=group.account_id,
                reason="memberships_changed",
                narrowed=bool(removed),
                group_ids=frozenset({group.pk}),
                actor_ids=frozenset(removed | (wanted - current)),
            )
        )


# --- auth providers and directories ------------------------------------------------------------


@transaction.atomic
def create_auth_provider(
    account: Account,
    *,
    name: str,
    kind: str,
    context: str = AuthProvider.Context.BOTH,
    client_session_lifetime: timedelta = timedelta(days=7),
    portal_session_lifetime: timedelta = timedelta(hours=8),
    config: dict[str, object] | None = None,
) -> AuthProvider:
    name = clean_name(name)
    if kind not in AuthProvider.Kind.values:
        raise ValidationFailed({"kind": f"Choose one of: {', '.join(AuthProvider.Kind.values)}."})
    if context not in AuthProvider.Context.values:
        raise ValidationFailed({"context": "Choose clients, portal or both."})
    if not timedelta(hours=1) <= client_session_lifetime <= timedelta(days=90):
        raise ValidationFailed(
            {"client_session_lifetime": _CONSTRAINTS["provider_client_session_1h_90d"][1]}
        )
    if AuthProvider.objects.for_account(account).filter(name=name).exists():
        raise ValidationFailed({"name": "An auth provider with this name already exists."})
    with integrity_errors_as_validation(_CONSTRAINTS):
        return AuthProvider.objects.create(
            account=account,
            name=name,
            kind=kind,
            context=context,
            client_session_lifetime=client_session_lifetime,
            portal_session_lifetime=portal_session_lifetime,
            config=config or {},
        )


@transaction.atomic
def disable_auth_provider(provider: AuthProvider) -> None:
    """Disable a provider and end the flows that may have depended on signing in through it.

    Authorizations do not record the provider a client signed in with, so every active flow of a
    policy that requires this provider (``provider_id is_in [..., this, ...]``) is revoked; a
    client that signed in elsewhere simply asks again and is re-evaluated.
    """
    now = timezone.now()
    AuthProvider.objects.filter(pk=provider.pk, account_id=provider.account_id).update(
        disabled_at=now
    )
    needing = hooks.policies_requiring_provider(provider.account_id, provider.pk)
    revoked = hooks.revoke_flows(
        provider.account_id, policy_ids=needing, reason="provider_disabled"
    )
    # Its portal sessions end and its client tokens are revoked (the event disconnects them).
    from accounts.signin.services import end_provider_sessions

    token_ids = frozenset(
        Token.objects.for_account(provider.account_id)
        .filter(provider_id=provider.pk, revoked_at__isnull=True)
        .values_list("pk", flat=True)
    )
    Token.objects.filter(pk__in=token_ids).update(revoked_at=now)
    end_provider_sessions(provider.pk)
    publish(
        AccessChanged(
            account_id=provider.account_id,
            reason="provider_disabled",
            policy_ids=needing,
            authorization_ids=revoked,
            token_ids=token_ids,
        )
    )


@transaction.atomic
def create_directory(account: Account, *, name: str, kind: str) -> Directory:
    name = clean_name(name)
    if kind not in Directory.Kind.values:
        raise ValidationFailed({"kind": f"Choose one of: {', '.join(Directory.Kind.values)}."})
    if Directory.objects.for_account(account).filter(name=name).exists():
        raise ValidationFailed({"name": "A directory with this name already exists."})
    with integrity_errors_as_validation(_CONSTRAINTS):
        return Directory.objects.create(account=account, name=name, kind=kind)


# --- tokens ------------------------------------------------------------------------------------


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: Token
    secret: str  # shown once, never stored


@transaction.atomic
def create_token(
    account: Account,
    *,
    kind: str,
    name: str = "",
    actor: Actor | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    """A new token and its secret (shown once). A gateway token is only usable once
    ``gateways.services.issue_gateway_token`` has bound it to a site, in the same transaction."""
    if kind not in Token.Kind.values:
        raise ValidationFailed({"kind": f"Choose one of: {', '.join(Token.Kind.values)}."})
    if kind == Token.Kind.API and (
        actor is None or actor.type not in (Actor.Type.SERVICE_ACCOUNT, Actor.Type.API_CLIENT)
    ):
        raise ValidationFailed({"actor": "API tokens belong to a service account or API client."})
    if actor is not None and actor.account_id != account.pk:
        raise NotFound("No such actor.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed({"expires_at": "The expiry must be in the future."})
    token_id = uuid.uuid4()
    secret = f"{TOKEN_PREFIX[Token.Kind(kind)]}_{token_id.hex}_{secrets.token_urlsafe(32)}"
    token = Token.objects.create(
        id=token_id,
        account=account,
        kind=kind,
        name=name.strip()[:255],
        secret_hash=hash_secret(secret),
        actor=actor,
        expires_at=expires_at,
    )
    return IssuedToken(token=token, secret=secret)


def parse_secret(secret: str) -> tuple[str, uuid.UUID] | None:
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] not in TOKEN_PREFIX.values():
        return None
    try:
        return parts[0], uuid.UUID(hex=parts[1])
    except ValueError:
        return None


@transaction.atomic
def use_token(secret: str, *, kind: str, remote_ip: str | None = None) -> Token | None:
    """Authenticate a bearer secret: the token if valid, usable and of ``kind``; else None.

    Records last use. Using a token that replaced another ends the old one's grace period.
    """
    parsed = parse_secret(secret or "")
    if parsed is None or TOKEN_PREFIX.get(Token.Kind(kind)) != parsed[0]:
        hmac.compare_digest(hash_secret(secret or ""), "0" * 64)  # same work either way
        return None
    token = Token.objects.select_related("account", "actor").filter(pk=parsed[1], kind=kind).first()
    if token is None:
        hmac.compare_digest(hash_secret(secret), "0" * 64)
        return None
    if not hmac.compare_digest(token.secret_hash, hash_secret(secret)):
        return None
    now = timezone.now()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if token.grace_until is not None and token.grace_until <= now:
        return None
    if token.actor is not None and token.actor.disabled_at is not None:
        return None
    ip: str | None = None
    if remote_ip:
        try:
            ip = str(ipaddress.ip_address(remote_ip))
        except ValueError:
            ip = None
    Token.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=ip)
    if token.kind == Token.Kind.GATEWAY:  # only gateway tokens rotate
        # The successor's first use ends its predecessor's grace period.
        Token.objects.filter(replaced_by=token, revoked_at__isnull=True).update(revoked_at=now)
    return token


@transaction.atomic
def issue_api_token(
    account: Account,
    *,
    actor_id: uuid.UUID | str | None = None,
    new_service_account: str = "",
    name: str = "",
    expires_in_days: int | None = None,
) -> IssuedToken:
    """An API token for an existing service account / API client of the account, or for a new
    API client named ``new_service_account`` (created in the same transaction).

    An API client's token manages the account through the REST API; a service account's (the
    identity of a headless client) is refused there (403)."""
    if actor_id:
        actor = (
            Actor.objects.for_account(account)
            .filter(type__in=(Actor.Type.SERVICE_ACCOUNT, Actor.Type.API_CLIENT), pk=actor_id)
            .first()
        )
        if actor is None:
            raise NotFound("No such service account.")
    else:
        actor = create_actor(
            account, name=new_service_account, email="", type=Actor.Type.API_CLIENT
        )
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    return create_token(account, kind=Token.Kind.API, actor=actor, name=name, expires_at=expires_at)


@transaction.atomic
def revoke_token(token: Token) -> None:
    Token.objects.filter(pk=token.pk, account_id=token.account_id).update(revoked_at=timezone.now())
    publish(
        AccessChanged(
            account_id=token.account_id, reason="token_revoked", token_ids=frozenset({token.pk})
        )
    )


@transaction.atomic
def replace_token(token: Token, *, now: datetime | None = None) -> IssuedToken:
    """Issue a successor for a gateway token; the old one works for 4 h or until the new is used.

    Only the identity half of a rotation: ``gateways.services.rotate_gateway_token`` binds the
    successor to the same site in the same transaction.
    """
    now = now or timezone.now()
    token = Token.objects.select_for_update().get(pk=token.pk, account_id=token.account_id)
    if token.kind != Token.Kind.GATEWAY:
        raise ValidationFailed({"kind": "Only gateway tokens rotate."})
    issued = create_token(token.account, kind=Token.Kind.GATEWAY, name=token.name)
    token.replaced_by = issued.token
    token.grace_until = now + GATEWAY_TOKEN_GRACE
    token.save(update_fields=["replaced_by", "grace_until"])
    return issued


@transaction.atomic
def delete_expired_tokens(now: datetime | None = None) -> int:
    """Delete tokens past expiry, revocation or grace (a day after, to keep recent audit)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=1)
    from django.db.models import Q

    _, per_model = Token.objects.filter(
        Q(expires_at__lte=cutoff) | Q(revoked_at__lte=cutoff) | Q(grace_until__lte=cutoff)
    ).delete()
    return per_model.get(Token._meta.label, 0)  # not the rows that cascade with them


# --- bootstrap ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    account: Account
    admin: Actor
    password: str


@transaction.atomic
def bootstrap(
    *, account_name: str, slug: str, admin_email: str, admin_name: str = "Admin"
) -> Bootstrap:
    """First account + an admin who is also Django staff (view-only, this account only), with a
    generated password."""
    account = create_account(name=account_name, slug=slug)
    password = secrets.token_urlsafe(15)
    admin = create_actor(
        account,
        email=admin_email,
        name=admin_name,
        type=Actor.Type.ADMIN,
        password=password,
        staff=True,
    )
    create_auth_provider(account, name="Email", kind=AuthProvider.Kind.EMAIL)
    return Bootstrap(account=account, admin=admin, password=password)


def get_actor(account: Account, actor_id: uuid.UUID) -> Actor:
    actor = Actor.objects.for_account(account).filter(pk=actor_id).first()
    if actor is None:
        raise NotFound("No such actor.")
    return actor
