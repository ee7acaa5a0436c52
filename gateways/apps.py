from django.apps import AppConfig


class GatewaysConfig(AppConfig):
    name = "gateways"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from firezone_site import events
        from gateways import handlers

        events.subscribe(handlers.on_access_changed)
