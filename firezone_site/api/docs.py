"""Swagger UI at /api/docs/, served from our own static files (drf-spectacular-sidecar) under the
portal's strict Content-Security-Policy: the split view loads its init script from a URL (no
inline script) and our template replaces drf-spectacular's inline <style> with a static file."""

from __future__ import annotations

from drf_spectacular.views import SpectacularSwaggerSplitView


class SwaggerView(SpectacularSwaggerSplitView):
    template_name = "api/swagger_ui.html"
    authentication_classes: list[type] = []
    permission_classes: list[type] = []
