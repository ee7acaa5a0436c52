"""Operational tasks of the portal itself."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer


@shared_task(name="firezone_site.echo")
def echo(channel: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` back on ``channel``: proves broker -> worker -> channel layer works."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    async_to_sync(layer.send)(channel, {"type": "echo", **payload})
