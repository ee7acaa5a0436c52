from django.contrib import admin
from django.urls import include, path

from firezone_site import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("django-admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("policies.urls")),
    path("", include("gateways.urls")),
    path("", include("accounts.signin.urls")),
    path("", include("accounts.signin.account_urls")),  # last: /<account slug>/sign-in
]
