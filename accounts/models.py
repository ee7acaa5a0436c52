"""Tenants and identities: accounts, actors, identities, auth providers, directories, groups,
memberships and tokens. Invariants that the database can hold are constraints here; the rest is
kept by ``accounts.services``."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.scoping import AccountManager, AccountScoped


class Account(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    slug = models.SlugField(max_length=100, unique=True)
    settings = models.JSONField(default=dict, blank=True)  # search_domain, upstream_dns
    limits = models.JSONField(default=dict, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None


class Actor(AccountScoped):
    class Type(models.TextChoices):
        USER = "user", "User"
        ADMIN = "admin", "Admin"
        SERVICE_ACCOUNT = "service_account", "Service account"
        API_CLIENT = "api_client", "API client"

    type = models.CharField(max_length=20, choices=Type.choices, default=Type.USER)
    email = models.EmailField(max_length=254, blank=True, default="")
    name = models.CharField(max_length=255)
    disabled_at = models.DateTimeField(null=True, blank=True)
    directory = models.ForeignKey(
        "accounts.Directory",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="actors",
    )
    provider_id = models.CharField(max_length=255, blank=True, default="")
    # Local sign-in to the web UI (until identity providers land) goes through Django's auth user.
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="actor",
    )

    objects = AccountManager["Actor"]()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "email"],
                condition=~Q(email=""),
                name="actor_email_unique_per_account",
            ),
            # Not partial, so that a bulk upsert can name it (ON CONFLICT); NULLs are distinct.
            models.UniqueConstraint(
                fields=["directory", "provider_id"], name="actor_provider_id_unique"
            ),
        ]
        indexes = [models.Index(fields=["account", "name"])]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None

    @property
    def is_admin(self) -> bool:
        return self.type == Actor.Type.ADMIN


class AuthProvider(AccountScoped):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email one-time code"
        OIDC = "oidc", "OpenID Connect"
        GOOGLE = "google", "Google Workspace"
        OKTA = "okta", "Okta"
        ENTRA = "entra", "Microsoft Entra ID"

    class Context(models.TextChoices):
        CLIENTS = "clients", "Clients"
        PORTAL = "portal", "Portal"
        BOTH = "both", "Clients and portal"

    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    context = models.CharField(max_length=20, choices=Context.choices, default=Context.BOTH)
    client_session_lifetime = models.DurationField(default=timedelta(days=7))
    portal_session_lifetime = models.DurationField(default=timedelta(hours=8))
    config = models.JSONField(default=dict, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    objects = AccountManager["AuthProvider"]()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="provider_name_unique"),
            models.CheckConstraint(
                condition=Q(client_session_lifetime__gte=timedelta(hours=1))
                & Q(client_session_lifetime__lte=timedelta(days=90)),
                name="provider_client_session_1h_90d",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Directory(AccountScoped):
    class Kind(models.TextChoices):
        GOOGLE = "google", "Google Workspace"
        OKTA = "okta", "Okta"
        ENTRA = "entra", "Microsoft Entra ID"
        SCIM = "scim", "SCIM 2.0"

    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    config = models.JSONField(default=dict, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Pull sync (accounts.directories): every sync_interval; a run holds the lease until
    # lease_until (renewed per page), so a crashed worker's lease simply runs out.
    sync_interval = models.DurationField(default=timedelta(hours=2))
    sync_generation = models.PositiveIntegerField(default=0)
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    scim_token = models.OneToOneField(
        "accounts.Token", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = AccountManager["Directory"]()

    class Meta:
        verbose_name_plural = "directories"
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="directory_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class Identity(AccountScoped):
    actor = models.ForeignKey(Actor, on_delete=models.CASCADE, related_name="identities")
    provider = models.ForeignKey(
        AuthProvider, null=True, blank=True, on_delete=models.SET_NULL, related_name="identities"
    )
    issuer = models.CharField(max_length=512)
    subject = models.CharField(max_length=255)
    email = models.EmailField(max_length=254, blank=True, default="")
    claims = models.JSONField(default=dict, blank=True)
    # Set for identities a directory keeps (sync or SCIM): the run that last saw them.
    directory = models.ForeignKey(
        Directory, null=True, blank=True, on_delete=models.CASCADE, related_name="identities"
    )
    sync_generation = models.PositiveIntegerField(null=True, blank=True)

    objects = AccountManager["Identity"]()

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "issuer", "subject"], name="identity_unique_per_issuer"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.issuer}#{self.subject}"


class Group(AccountScoped):
    EVERYONE = "Everyone"

    class Kind(models.TextChoices):
        MANAGED = "managed", "Managed"
        STATIC = "static", "Static"
        SYNCED = "synced", "Synced from a directory"

    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.STATIC)
    provider_id = models.CharField(max_length=255, blank=True, default="")
    directory = models.ForeignKey(
        Directory, null=True, blank=True, on_delete=models.SET_NULL, related_name="groups"
    )
    members = models.ManyToManyField(Actor, through="Membership", related_name="groups")
    sync_generation = models.PositiveIntegerField(null=True, blank=True)
    scim = models.JSONField(default=dict, blank=True)  # the SCIM resource, for SCIM directories

    objects = AccountManager["Group"]()

    class Meta:
        constraints = [
            # Names are the admin's handle on hand-made groups; a directory's groups are named by
            # the directory (two of them may both have an "Engineering").
            models.UniqueConstraint(
                fields=["account", "name"],
                condition=Q(directory__isnull=True),
                name="group_name_unique",
            ),
            models.UniqueConstraint(
                fields=["directory", "provider_id"], name="group_provider_id_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_managed(self) -> bool:
        return self.kind == Group.Kind.MANAGED

    @property
    def is_read_only(self) -> bool:
        """Managed (Everyone) or kept by a directory: no edits by hand."""
        return self.kind in (Group.Kind.MANAGED, Group.Kind.SYNCED)


class Membership(AccountScoped):
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships")
    actor = models.ForeignKey(Actor, on_delete=models.CASCADE, related_name="memberships")
    sync_generation = models.PositiveIntegerField(null=True, blank=True)

    objects = AccountManager["Membership"]()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "actor"], name="membership_unique"),
        ]
        indexes = [models.Index(fields=["actor", "group"])]

    def __str__(self) -> str:
        return f"{self.actor_id} in {self.group_id}"


class Token(AccountScoped):
    """A bearer secret. The secret is ``<prefix>_<id hex>_<random>``; only its SHA-256 is kept.

    The id in the secret makes lookup a primary-key fetch; the random part is 256 bits, so a plain
    SHA-256 (no salt, no slow hash) is the right storage, compared with ``hmac.compare_digest``.
    """

    class Kind(models.TextChoices):
        GATEWAY = "gateway", "Gateway"
        CLIENT = "client", "Client session"
        API = "api", "API"
        SIGN_IN = "sign_in", "One-time sign-in code"
        SCIM = "scim", "SCIM bearer token"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=255, blank=True, default="")
    secret_hash = models.CharField(max_length=64)
    actor = models.ForeignKey(
        Actor, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens"
    )
    # The provider a client session was signed in through: disabling it revokes the token.
    provider = models.ForeignKey(
        AuthProvider, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Rotation: the replaced token keeps working until grace_until or until its successor is used.
    replaced_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces"
    )
    grace_until = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AccountManager["Token"]()

    class Meta:
        indexes = [models.Index(fields=["account", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} token {self.name or self.pk}"


# Registers the models of the sign-in (accounts.signin) and directory sync (accounts.directories).
from accounts.directories.models import SyncRun  # noqa: E402, F401
from accounts.signin.models import DeviceAuthorization, SignInCode  # noqa: E402, F401
