"""The per-account sign-in routes (``/<account slug>/...``), included last by the root URLconf
so that every fixed path wins over an account slug."""

from accounts.signin.urls import account_urlpatterns as urlpatterns

__all__ = ["urlpatterns"]
