from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularJSONAPIView

from firezone_site import health
from firezone_site.api import docs, problems

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("django-admin/", admin.site.urls),
    path("api/openapi.json", SpectacularJSONAPIView.as_view(), name="api-schema"),
    path("api/docs/", docs.SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("accounts.api.urls")),
    path("api/v1/", include("policies.api.urls")),
    path("api/v1/", include("gateways.api.urls")),
    path("", include("accounts.urls")),
    path("", include("policies.urls")),
    path("", include("gateways.urls")),
    path("", include("accounts.signin.urls")),
    path("", include("accounts.signin.account_urls")),  # /<account slug>/sign-in
    # Last: any other path under /api is an API 404 problem, not the UI's HTML page (newlines
    # too: "." alone would let one fall through).
    re_path(r"^api(?:/(?P<path>[\s\S]*))?\Z", problems.not_found),
]
