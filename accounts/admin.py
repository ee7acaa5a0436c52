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


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin[Account]):
    list_display = ("name", "slug", "disabled_at", "created_at")
    search_fields = ("name", "slug")
    list_filter = ("disabled_at",)


@admin.register(Actor)
class ActorAdmin(admin.ModelAdmin[Actor]):
    list_display = ("name", "email", "type", "account", "disabled_at", "created_at")
    search_fields = ("name", "email")
    list_filter = ("type", "account", "disabled_at")
    list_select_related = ("account",)
    raw_id_fields = ("user", "directory")


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin[Identity]):
    list_display = ("issuer", "subject", "email", "actor", "account")
    search_fields = ("issuer", "subject", "email")
    list_filter = ("account",)
    list_select_related = ("actor", "account")
    raw_id_fields = ("actor", "provider")


@admin.register(AuthProvider)
class AuthProviderAdmin(admin.ModelAdmin[AuthProvider]):
    list_display = ("name", "kind", "context", "account", "disabled_at")
    search_fields = ("name",)
    list_filter = ("kind", "context", "account")
    list_select_related = ("account",)


@admin.register(Directory)
class DirectoryAdmin(admin.ModelAdmin[Directory]):
    list_display = ("name", "kind", "account", "last_synced_at", "disabled_at")
    search_fields = ("name", "last_error")
    list_filter = ("kind", "account")
    list_select_related = ("account",)


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin[Group]):
    list_display = ("name", "kind", "account", "created_at")
    search_fields = ("name", "provider_id")
    list_filter = ("kind", "account")
    list_select_related = ("account",)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ("group", "actor", "account", "created_at")
    search_fields = ("group__name", "actor__email", "actor__name")
    list_filter = ("account",)
    list_select_related = ("group", "actor", "account")
    raw_id_fields = ("group", "actor")


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin[Token]):
    # The secret is never stored; the hash is not shown either.
    list_display = (
        "name",
        "kind",
        "account",
        "actor",
        "site",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    search_fields = ("name", "actor__email")
    list_filter = ("kind", "account", "revoked_at")
    list_select_related = ("account", "actor", "site")
    exclude = ("secret_hash",)
    readonly_fields = ("last_used_at", "last_used_ip", "replaced_by", "grace_until")
    raw_id_fields = ("actor", "site")

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False  # issuing a token must go through the service that shows the secret once


import accounts.signin.admin  # noqa: E402, F401  (registers the sign-in models)
