from django.contrib import admin

from firezone_site.readonly_admin import ReadOnlyAdmin
from policies.models import Policy, Resource, Site


@admin.register(Resource)
class ResourceAdmin(ReadOnlyAdmin[Resource]):
    list_display = ("name", "kind", "address", "site", "account", "created_at")
    search_fields = ("name", "address", "address_description")
    list_filter = ("kind", "ip_stack", "account", "site")
    list_select_related = ("site", "account")


@admin.register(Policy)
class PolicyAdmin(ReadOnlyAdmin[Policy]):
    list_display = ("group", "resource", "account", "disabled_at", "created_at")
    search_fields = ("group__name", "resource__name", "description")
    list_filter = ("account", "disabled_at")
    list_select_related = ("group", "resource", "account")


@admin.register(Site)
class SiteAdmin(ReadOnlyAdmin[Site]):
    list_display = ("name", "account", "created_at")
    search_fields = ("name",)
    list_filter = ("account",)
    list_select_related = ("account",)
