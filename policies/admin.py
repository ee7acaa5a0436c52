from django.contrib import admin

from policies.models import Authorization, Policy, Resource


@admin.register(Resource)
class ResourceAdmin(admin.ModelAdmin[Resource]):
    list_display = ("name", "kind", "address", "site", "account", "created_at")
    search_fields = ("name", "address", "address_description")
    list_filter = ("kind", "ip_stack", "account", "site")
    list_select_related = ("site", "account")


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin[Policy]):
    list_display = ("group", "resource", "account", "disabled_at", "created_at")
    search_fields = ("group__name", "resource__name", "description")
    list_filter = ("account", "disabled_at")
    list_select_related = ("group", "resource", "account")
    raw_id_fields = ("group", "resource")


@admin.register(Authorization)
class AuthorizationAdmin(admin.ModelAdmin[Authorization]):
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
    raw_id_fields = ("actor", "device", "resource", "policy", "gateway", "token")
