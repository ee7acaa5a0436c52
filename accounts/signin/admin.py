"""Django admin for the sign-in models: read-only like every tenant model, hashes never shown."""

from __future__ import annotations

from django.contrib import admin

from accounts.signin.models import DeviceAuthorization, SignInCode
from firezone_site.readonly_admin import ReadOnlyAdmin


@admin.register(SignInCode)
class SignInCodeAdmin(ReadOnlyAdmin[SignInCode]):
    list_display = ("actor", "account", "created_at", "expires_at", "attempts", "used_at")
    list_filter = ("account",)
    exclude = ("code_hash",)
    list_select_related = ("actor", "account")


@admin.register(DeviceAuthorization)
class DeviceAuthorizationAdmin(ReadOnlyAdmin[DeviceAuthorization]):
    list_display = ("client_name", "account", "actor", "created_at", "approved_at", "redeemed_at")
    list_filter = ("account",)
    exclude = ("device_code_hash", "user_code_hash")
    list_select_related = ("actor", "account")
