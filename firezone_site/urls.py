from django.contrib import admin
from django.urls import include, path

from accounts.signin import urls as signin_urls
from firezone_site import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("django-admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("policies.urls")),
    path("", include("gateways.urls")),
    path("", include(signin_urls.admin_urlpatterns)),
    path("", include(signin_urls.account_urlpatterns)),  # last: /<account slug>/sign-in
]
