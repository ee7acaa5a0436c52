"""Django admin for directory sync runs: read-only like every tenant model."""

from __future__ import annotations

from django.contrib import admin

from accounts.directories.models import SyncRun
from firezone_site.readonly_admin import ReadOnlyAdmin


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin[SyncRun]):
    list_display = ("directory", "account", "generation", "status", "phase", "started_at")
    list_filter = ("account", "status")
    list_select_related = ("directory", "account")
