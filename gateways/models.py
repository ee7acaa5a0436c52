"""Gateways, client devices, the tunnel address pool, gateway tokens' sites and authorizations.

Sites live in ``policies`` (resources are placed on them); this app connects gateways to them.
``Authorization`` keeps its original table ``policies_authorization``: it moved here, next to the
devices and gateways it names, without a schema change."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from accounts.scoping import AccountManager, AccountScoped
from policies.models import Site


class TunnelAddress(AccountScoped):
    """One allocated slot of the account's tunnel pool.

    Slot ``n`` stands for ``100.64.0.0/11 + n`` and ``fd00:2021:1111::/107 + n`` together, so a
    device's IPv4 and IPv6 addresses are allocated in one insert. The unique constraint is what
    makes allocation safe under concurrency: a racing insert of the same slot fails and retries
    elsewhere.
    """

    slot = models.PositiveIntegerField()

    objects = AccountManager["TunnelAddress"]()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "slot"], name="tunnel_slot_unique"),
        ]

    def __str__(self) -> str:
        return f"slot {self.slot}"


class Gateway(AccountScoped):
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="gateways")
    external_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    public_key = models.CharField(max_length=44)
    address = models.OneToOneField(TunnelAddress, on_delete=models.PROTECT, related_name="gateway")
    ipv4 = models.GenericIPAddressField(protocol="IPv4")
    ipv6 = models.GenericIPAddressField(protocol="IPv6")
    online = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_remote_ip = models.GenericIPAddressField(null=True, blank=True)
    last_seen_version = models.CharField(max_length=64, blank=True, default="")
    # What the agent sent as ``endpoint``, or (``endpoint_guessed``) the websocket's source
    # address and the default port. ``endpoint_override``, set by an admin in the UI, wins over
    # both (docs/protocol.md, "Endpoint precedence").
    last_seen_endpoint = models.CharField(max_length=100, blank=True, default="")
    endpoint_guessed = models.BooleanField(default=False)
    endpoint_override = models.CharField(max_length=100, blank=True, default="")
    # The websocket connection currently holding this gateway (Channels channel name).
    channel_name = models.CharField(max_length=255, blank=True, default="")
    # The token the current/last connection authenticated with (rotation pushes to its holders).
    last_token = models.ForeignKey(
        "accounts.Token", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = AccountManager["Gateway"]()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "site", "external_id"], name="gateway_external_id_unique"
            ),
            models.UniqueConstraint(fields=["account", "public_key"], name="gateway_key_unique"),
        ]
        indexes = [models.Index(fields=["site", "online"])]

    def __str__(self) -> str:
        return self.name

    @property
    def endpoint(self) -> str:
        """Where static devices are told to reach this gateway ("" if unknown)."""
        return self.endpoint_override or self.last_seen_endpoint

    @property
    def endpoint_source(self) -> str:
        if self.endpoint_override:
            return "set by an admin"
        if not self.last_seen_endpoint:
            return ""
        return "guessed from the websocket" if self.endpoint_guessed else "from the agent"


class ClientDevice(AccountScoped):
    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", "Client agent"
        STATIC = "static", "Static WireGuard config"

    actor = models.ForeignKey("accounts.Actor", on_delete=models.CASCADE, related_name="devices")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.DYNAMIC)
    external_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    public_key = models.CharField(max_length=44)
    address = models.OneToOneField(TunnelAddress, on_delete=models.PROTECT, related_name="device")
    ipv4 = models.GenericIPAddressField(protocol="IPv4")
    ipv6 = models.GenericIPAddressField(protocol="IPv6")
    verified_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_remote_ip = models.GenericIPAddressField(null=True, blank=True)
    last_seen_version = models.CharField(max_length=64, blank=True, default="")
    # Client agents: the websocket connection currently holding this device ("" = offline).
    channel_name = models.CharField(max_length=255, blank=True, default="")
    # Static devices: bumped whenever the issued config would change.
    config_version = models.PositiveIntegerField(default=1)
    # SHA-256 of the config text as last rendered (without private key and version line).
    config_digest = models.CharField(max_length=64, blank=True, default="")

    objects = AccountManager["ClientDevice"]()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "public_key"], name="device_key_unique"),
            models.UniqueConstraint(
                fields=["account", "actor", "external_id"], name="device_external_id_unique"
            ),
            models.UniqueConstraint(
                fields=["account", "actor", "name"],
                condition=Q(kind="static"),
                name="static_device_name_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None


class StaticDeviceAssignment(AccountScoped):
    """Which gateway of a site serves a static device, and which resources it may reach there.

    One row per (device, site) the device has allowed cidr/ip resources in. ``gateway`` is None
    only while the site has no gateway at all. ``resource_ids`` is what the gateway was last told
    (sorted UUID strings), so a recompute can tell whether anything must be pushed.
    """

    device = models.ForeignKey(
        ClientDevice, on_delete=models.CASCADE, related_name="static_assignments"
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="static_assignments")
    gateway = models.ForeignKey(
        Gateway,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="static_assignments",
    )
    resource_ids = models.JSONField(default=list, blank=True)
    # The gateway's last ``peer_stats`` report for this device (None/0 until one arrives).
    last_handshake_at = models.DateTimeField(null=True, blank=True)
    rx_bytes = models.BigIntegerField(default=0)
    tx_bytes = models.BigIntegerField(default=0)
    peer_endpoint = models.CharField(max_length=100, blank=True, default="")
    stats_at = models.DateTimeField(null=True, blank=True)

    objects = AccountManager["StaticDeviceAssignment"]()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "site"], name="static_assignment_unique"),
        ]
        indexes = [models.Index(fields=["gateway"])]

    def __str__(self) -> str:
        return f"{self.device_id} @ {self.site_id} -> {self.gateway_id}"


class AccountKeySecret(AccountScoped):
    """Per-account secret that preshared keys are derived from (HMAC, see services.preshared_key).

    Kept apart from SECRET_KEY on purpose: rotating the Django secret must not silently invalidate
    every issued WireGuard config.
    """

    secret = models.CharField(max_length=64)

    objects = AccountManager["AccountKeySecret"]()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account"], name="account_key_secret_unique"),
        ]

    def __str__(self) -> str:
        return f"key secret of {self.account_id}"


class GatewayToken(AccountScoped):
    """Binds a gateway token (``accounts.Token`` of kind gateway) to the site its gateways join.

    Tokens are identities (``accounts``); which site a gateway token lets a gateway join is this
    app's business, so the binding lives here rather than as a column of the token. Every gateway
    token has exactly one binding (``services.issue_gateway_token`` creates both in one
    transaction); a token without one is refused at connect.
    """

    token = models.OneToOneField(
        "accounts.Token", on_delete=models.CASCADE, related_name="gateway_binding"
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="gateway_tokens")

    objects = AccountManager["GatewayToken"]()

    def __str__(self) -> str:
        return f"token {self.token_id} -> site {self.site_id}"


class Authorization(AccountScoped):
    """Which policy let which client reach which resource through which gateway, until when.

    Revocation does not delete the row (it is the audit trail): it sets ``revoked_at`` and a reason,
    and only rows with no ``revoked_at`` and ``expires_at`` in the future are active.
    """

    actor = models.ForeignKey(
        "accounts.Actor", null=True, on_delete=models.SET_NULL, related_name="authorizations"
    )
    device = models.ForeignKey(
        ClientDevice, null=True, on_delete=models.SET_NULL, related_name="authorizations"
    )
    resource = models.ForeignKey(
        "policies.Resource", null=True, on_delete=models.SET_NULL, related_name="authorizations"
    )
    policy = models.ForeignKey(
        "policies.Policy", null=True, on_delete=models.SET_NULL, related_name="authorizations"
    )
    gateway = models.ForeignKey(
        Gateway, null=True, on_delete=models.SET_NULL, related_name="authorizations"
    )
    token = models.ForeignKey(
        "accounts.Token", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Denormalized for the audit log: still readable after the objects are deleted.
    actor_email = models.CharField(max_length=254, blank=True, default="")
    resource_name = models.CharField(max_length=255, blank=True, default="")
    resource_address = models.CharField(max_length=253, blank=True, default="")
    client_remote_ip = models.GenericIPAddressField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=64, blank=True, default="")

    objects = AccountManager["Authorization"]()

    class Meta:
        db_table = "policies_authorization"
        indexes = [
            models.Index(fields=["account", "-created_at"]),
            models.Index(fields=["gateway", "revoked_at"]),
            models.Index(fields=["policy", "revoked_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.actor_email} -> {self.resource_name}"
