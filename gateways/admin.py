from django.contrib import admin

from firezone_site.readonly_admin import ReadOnlyAdmin
from gateways.models import (
    AccountKeySecret,
    Authorization,
    ClientDevice,
    Gateway,
    GatewayToken,
    StaticDeviceAssignment,
    TunnelAddress,
)


@admin.register(Gateway)
class GatewayAdmin(ReadOnlyAdmin[Gateway]):
    list_display = (
        "name",
        "site",
        "account",
        "online",
        "ipv4",
        "last_seen_at",
        "last_seen_version",
    )
    search_fields = ("name", "external_id", "public_key", "ipv4", "ipv6")
    list_filter = ("online", "account", "site")
    list_select_related = ("site", "account")


@admin.register(ClientDevice)
class ClientDeviceAdmin(ReadOnlyAdmin[ClientDevice]):
    list_display = (
        "name",
        "actor",
        "kind",
        "account",
        "ipv4",
        "config_version",
        "last_seen_at",
        "disabled_at",
    )
    search_fields = ("name", "external_id", "public_key", "ipv4", "ipv6", "actor__email")
    list_filter = ("kind", "account", "disabled_at")
    list_select_related = ("actor", "account")


@admin.register(TunnelAddress)
class TunnelAddressAdmin(ReadOnlyAdmin[TunnelAddress]):
    list_display = ("slot", "account", "created_at")
    search_fields = ("slot",)
    list_filter = ("account",)


@admin.register(StaticDeviceAssignment)
class StaticDeviceAssignmentAdmin(ReadOnlyAdmin[StaticDeviceAssignment]):
    list_display = ("device", "site", "gateway", "account", "created_at")
    search_fields = ("device__name", "site__name", "gateway__name")
    list_filter = ("account", "site")
    list_select_related = ("device", "site", "gateway", "account")


@admin.register(AccountKeySecret)
class AccountKeySecretAdmin(ReadOnlyAdmin[AccountKeySecret]):
    # Preshared keys derive from this secret: staff may see that it exists, never its value.
    list_display = ("account", "created_at")
    list_filter = ("account",)
    exclude = ("secret",)
    readonly_fields = ("account", "created_at")


@admin.register(Authorization)
class AuthorizationAdmin(ReadOnlyAdmin[Authorization]):
    list_display = (
        "actor_email",
        "resource_name",
        "gateway",
        "account",
        "created_at",
        "expires_at",
        "revoked_at",
        "revoke_reason",
    )
    search_fields = ("actor_email", "resource_name", "resource_address")
    list_filter = ("account", "revoke_reason")
    list_select_related = ("gateway", "account")
    date_hierarchy = "created_at"


@admin.register(GatewayToken)
class GatewayTokenAdmin(ReadOnlyAdmin[GatewayToken]):
    list_display = ("token", "site", "account", "created_at")
    list_filter = ("account",)
    list_select_related = ("token", "site", "account")
