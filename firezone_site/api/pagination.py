"""Cursor pagination: stable under inserts, O(1) per page at any depth (no OFFSET scans)."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination as _CursorPagination


class CursorPagination(_CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
