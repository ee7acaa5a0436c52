"""Django admin for the sign-in models: read-only, and the code hash is never shown."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from accounts.signin.models import DeviceAuthorization, SignInCode


@admin.register(SignInCode)
class SignInCodeAdmin(admin.ModelAdmin[SignInCode]):
    list_display = ("actor", "account", "created_at", "expires_at", "attempts", "used_at")
    list_filter = ("account",)
    exclude = ("code_hash",)
    readonly_fields = ("account", "actor", "provider", "attempts", "expires_at", "used_at")
    list_select_related = ("actor", "account")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DeviceAuthorization)
class DeviceAuthorizationAdmin(admin.ModelAdmin[DeviceAuthorization]):
    list_display = ("client_name", "account", "actor", "created_at", "approved_at", "redeemed_at")
    exclude = ("device_code_hash", "user_code_hash")
    readonly_fields = (
        "account",
        "actor",
        "provider",
        "client_name",
        "expires_at",
        "approved_at",
        "denied_at",
        "redeemed_at",
        "last_polled_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
