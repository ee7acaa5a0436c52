"""Websocket routes. Each app contributes its own list."""

from typing import Any

websocket_urlpatterns: list[Any] = []
