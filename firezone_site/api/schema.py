"""OpenAPI generation: every operation documents the problem responses it can give, so that a
generated client knows the error shape and a schema-driven fuzzer can hold us to it."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as _AutoSchema
from drf_spectacular.utils import OpenApiParameter

from firezone_site.api.problems import PROBLEM_CONTENT_TYPE, ProblemSerializer

_ALWAYS = {
    "400": "The request is not valid (field errors in `errors`).",
    "401": "No valid API token (missing, unknown, revoked or expired).",
    "403": "The token may not do this (only API clients' tokens manage the account).",
    "404": "No such object in the token's account.",
    "406": "The Accept header asks for something other than JSON.",
    "429": "Rate limit of the token exceeded; retry after `Retry-After` seconds.",
}
_WITH_BODY = {"415": "The request body is not JSON."}
_CONDITIONAL = {"412": "`If-Match` does not match the object's current ETag."}


# The actions whose response is one object's representation, with its ETag.
_ETAGGED = {"retrieve", "create", "update", "partial_update", "enable", "disable"}


class AutoSchema(_AutoSchema):
    def get_override_parameters(self) -> list[Any]:
        parameters: list[Any] = list(super().get_override_parameters())
        action = getattr(self.view, "action", None)
        if action in _ETAGGED:
            parameters.append(
                OpenApiParameter(
                    "ETag",
                    str,
                    OpenApiParameter.HEADER,
                    response=[200, 201],
                    description="The object's version: send it back as If-Match.",
                )
            )
        if self.method in ("PUT", "PATCH", "DELETE"):
            parameters.append(
                OpenApiParameter(
                    "If-Match",
                    str,
                    OpenApiParameter.HEADER,
                    required=False,
                    description="Refuse the write (412) unless the object still has this ETag.",
                )
            )
        return parameters

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        component = self.resolve_serializer(ProblemSerializer(), "response")
        content = {PROBLEM_CONTENT_TYPE: {"schema": component.ref}}
        codes = dict(_ALWAYS)
        if self.method in ("POST", "PUT", "PATCH"):
            codes.update(_WITH_BODY)
        if self.method in ("PUT", "PATCH", "DELETE"):
            codes.update(_CONDITIONAL)
        for code, description in codes.items():
            responses.setdefault(code, {"description": description, "content": content})
        responses["429"].setdefault("headers", {})["Retry-After"] = {
            "schema": {"type": "integer"},
            "description": "Seconds until the token may send again.",
        }
        return responses
