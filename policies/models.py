"""Sites, resources and policies.

A resource lives on a site (the gateways of that site reach it), so sites belong here, below the
gateways app that connects gateways to them. The table keeps its original name ``gateways_site``
(the model moved without a schema change)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from accounts.scoping import AccountManager, AccountScoped


class Site(AccountScoped):
    name = models.CharField(max_length=255)

    objects = AccountManager["Site"]()

    class Meta:
        db_table = "gateways_site"
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="site_name_unique")]

    def __str__(self) -> str:
        return self.name


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
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="resources")
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
