"""Websocket routes. Each app contributes its own list."""

from typing import Any

from gateways.routing import websocket_urlpatterns as gateway_routes

websocket_urlpatterns: list[Any] = [*gateway_routes]
