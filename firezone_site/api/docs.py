"""Swagger UI at /api/docs/, served from our own static files (drf-spectacular-sidecar) under the
portal's strict Content-Security-Policy: the split view loads its init script from a URL (no
inline script) and our template replaces drf-spectacular's inline <style> with a static file.
Swagger UI's stylesheet draws its icons as ``data:`` SVG images, so this page alone also allows
``img-src data:`` (an image cannot run script; everything else stays as strict as the UI's)."""

from __future__ import annotations

from csp.decorators import csp_update
from django.utils.decorators import method_decorator
from drf_spectacular.views import SpectacularSwaggerSplitView


@method_decorator(csp_update({"img-src": ["data:"]}), name="dispatch")
class SwaggerView(SpectacularSwaggerSplitView):
    template_name = "api/swagger_ui.html"
    authentication_classes: list[type] = []
    permission_classes: list[type] = []
