"""Resources, policies and authorizations (the access audit trail)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from firezone_site.scoping import AccountManager, AccountScoped


class Resource(AccountScoped):
    class Kind(models.TextChoices):
        CIDR = "cidr", "CIDR range"
        IP = "ip", "IP address"
        DNS = "dns", "DNS name"
        INTERNET = "internet", "Internet"

    class IpStack(models.TextChoices):
        DUAL = "dual", "IPv4 and IPv6"
        IPV4_ONLY = "ipv4_only", "IPv4 only"
        IPV6_ONLY = "ipv6_only", "IPv6 only"

    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    address = models.CharField(max_length=253, blank=True, default="")
    address_description = models.CharField(max_length=512, blank=True, default="")
    site = models.ForeignKey("gateways.Site", on_delete=models.PROTECT, related_name="resources")
    # Canonical form: [{"protocol": "tcp", "ports": ["443", "1000-2000"]}, ...]; [] = everything.
    filters = models.JSONField(default=list, blank=True)
    ip_stack = models.CharField(max_length=20, choices=IpStack.choices, default=IpStack.DUAL)

    objects = AccountManager["Resource"]()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="resource_name_unique"),
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(kind="internet"),
                name="one_internet_resource_per_account",
            ),
        ]
        indexes = [models.Index(fields=["account", "site"])]

    def __str__(self) -> str:
        return self.name


class Policy(AccountScoped):
    group = models.ForeignKey("accounts.Group", on_delete=models.CASCADE, related_name="policies")
    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="policies")
    description = models.TextField(blank=True, default="")
    # Canonical form of policies.evaluation.conditions_to_json().
    conditions = models.JSONField(default=list, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    objects = AccountManager["Policy"]()

    class Meta:
        verbose_name_plural = "policies"
        constraints = [
            models.UniqueConstraint(
                fields=["group", "resource"], name="policy_group_resource_unique"
            ),
        ]
        indexes = [models.Index(fields=["resource", "group"])]

    def __str__(self) -> str:
        return f"{self.group_id} -> {self.resource_id}"

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None


class Authorization(AccountScoped):
    """Which policy let which client reach which resource through which gateway, until when.

    Revocation does not delete the row (it is the audit trail): it sets ``revoked_at`` and a reason,
    and only rows with no ``revoked_at`` and ``expires_at`` in the future are active.
    """

    actor = models.ForeignKey(
        "accounts.Actor", null=True, on_delete=models.SET_NULL, related_name="authorizations"
    )
    device = models.ForeignKey(
        "gateways.ClientDevice", null=True, on_delete=models.SET_NULL, related_name="authorizations"
    )
    resource = models.ForeignKey(
        Resource, null=True, on_delete=models.SET_NULL, related_name="authorizations"
    )
    policy = models.ForeignKey(
        Policy, null=True, on_delete=models.SET_NULL, related_name="authorizations"
    )
    gateway = models.ForeignKey(
        "gateways.Gateway", null=True, on_delete=models.SET_NULL, related_name="authorizations"
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
        indexes = [
            models.Index(fields=["account", "-created_at"]),
            models.Index(fields=["gateway", "revoked_at"]),
            models.Index(fields=["policy", "revoked_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.actor_email} -> {self.resource_name}"
