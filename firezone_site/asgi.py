"""ASGI entry point: HTTP through Django, websockets through Channels routing."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "firezone_site.settings")

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from firezone_site.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
