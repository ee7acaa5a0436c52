from django.apps import AppConfig


class GatewaysConfig(AppConfig):
    name = "gateways"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import hooks as account_hooks
        from firezone_site import events
        from gateways import handlers, queries, services, views
        from policies import hooks as policy_hooks

        events.subscribe(handlers.on_access_changed)
        # What the layers below need from this one (firezone_site.hooks).
        account_hooks.revoke_flows.provide(services.revoke_authorizations)
        account_hooks.delete_actor_devices.provide(services.delete_actor_devices)
        account_hooks.actor_page_context.provide(views.actor_page_context)
        policy_hooks.recent_authorizations_of_policy.provide(
            queries.recent_authorizations_of_policy
        )
