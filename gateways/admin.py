from django.contrib import admin

from gateways.models import ClientDevice, Gateway, Site, TunnelAddress


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin[Site]):
    list_display = ("name", "account", "created_at")
    search_fields = ("name",)
    list_filter = ("account",)
    list_select_related = ("account",)


@admin.register(Gateway)
class GatewayAdmin(admin.ModelAdmin[Gateway]):
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
    raw_id_fields = ("address",)


@admin.register(ClientDevice)
class ClientDeviceAdmin(admin.ModelAdmin[ClientDevice]):
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
    raw_id_fields = ("actor", "address")


@admin.register(TunnelAddress)
class TunnelAddressAdmin(admin.ModelAdmin[TunnelAddress]):
    list_display = ("slot", "account", "created_at")
    search_fields = ("slot",)
    list_filter = ("account",)
