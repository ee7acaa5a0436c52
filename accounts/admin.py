from django.contrib import admin

from accounts.models import (
    Account,
    Actor,
    AuthProvider,
    Directory,
    Group,
    Identity,
    Membership,
    Token,
)
from firezone_site.readonly_admin import ReadOnlyAdmin


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin[Account]):
    account_field = "pk"
    list_display = ("name", "slug", "disabled_at", "created_at")
    search_fields = ("name", "slug")
    list_filter = ("disabled_at",)


@admin.register(Actor)
class ActorAdmin(ReadOnlyAdmin[Actor]):
    list_display = ("name", "email", "type", "account", "disabled_at", "created_at")
    search_fields = ("name", "email")
    list_filter = ("type", "account", "disabled_at")
    list_select_related = ("account",)


@admin.register(Identity)
class IdentityAdmin(ReadOnlyAdmin[Identity]):
    list_display = ("issuer", "subject", "email", "actor", "account")
    search_fields = ("issuer", "subject", "email")
    list_filter = ("account",)
    list_select_related = ("actor", "account")


@admin.register(AuthProvider)
class AuthProviderAdmin(ReadOnlyAdmin[AuthProvider]):
    list_display = ("name", "kind", "context", "account", "disabled_at")
    search_fields = ("name",)
    list_filter = ("kind", "context", "account")
    list_select_related = ("account",)


@admin.register(Directory)
class DirectoryAdmin(ReadOnlyAdmin[Directory]):
    list_display = ("name", "kind", "account", "last_synced_at", "disabled_at")
    exclude = ("config",)  # holds the provider credentials (encrypted, but not for show)
    search_fields = ("name", "last_error")
    list_filter = ("kind", "account")
    list_select_related = ("account",)


@admin.register(Group)
class GroupAdmin(ReadOnlyAdmin[Group]):
    list_display = ("name", "kind", "account", "created_at")
    search_fields = ("name", "provider_id")
    list_filter = ("kind", "account")
    list_select_related = ("account",)


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin[Membership]):
    list_display = ("group", "actor", "account", "created_at")
    search_fields = ("group__name", "actor__email", "actor__name")
    list_filter = ("account",)
    list_select_related = ("group", "actor", "account")


@admin.register(Token)
class TokenAdmin(ReadOnlyAdmin[Token]):
    # The secret is never stored; the hash is not shown either.
    list_display = (
        "name",
        "kind",
        "account",
        "actor",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    search_fields = ("name", "actor__email")
    list_filter = ("kind", "account", "revoked_at")
    list_select_related = ("account", "actor")
    exclude = ("secret_hash",)
    readonly_fields = ("last_used_at", "last_used_ip", "replaced_by", "grace_until")


import accounts.directories.admin  # noqa: E402  (registers the sync runs)
import accounts.signin.admin  # noqa: E402, F401  (registers the sign-in models)
