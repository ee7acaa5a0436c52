from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "policies"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import hooks as account_hooks
        from policies import queries

        # What the layer below needs from this one (firezone_site.hooks).
        account_hooks.policies_requiring_provider.provide(queries.policies_requiring_provider)
