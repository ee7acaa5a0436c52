"""Websocket routes of the gateways app."""

from typing import Any

from django.urls import path

from gateways.client_consumer import ClientConsumer
from gateways.consumers import GatewayConsumer

websocket_urlpatterns: list[Any] = [
    path("gateway/websocket", GatewayConsumer.as_asgi()),
    path("client/websocket", ClientConsumer.as_asgi()),
]
