"""RFC 9457 problem details for every API error.

DRF's exceptions, the services' errors (``firezone_site.errors``) and Django's 404 all come out as
``application/problem+json``: ``type``/``title``/``status``/``detail``/``instance``, plus
``errors`` (field -> messages) for validation failures. Nothing else reaches the client, so a
generated client has exactly one error shape to handle.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from firezone_site import errors

PROBLEM_CONTENT_TYPE = "application/problem+json"


class PreconditionFailed(exceptions.APIException):
    status_code = 412
    default_detail = "The resource changed since you read it (If-Match does not match its ETag)."
    default_code = "precondition_failed"


class ProblemSerializer(serializers.Serializer[Any]):
    """The schema of every error response (documented once, referenced by every operation)."""

    type = serializers.CharField(help_text="A URI naming the problem type; about:blank here.")
    title = serializers.CharField(help_text="The HTTP status phrase.")
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField(help_text="The request path.")
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation failures only: field name -> messages (non_field_errors for the "
        "request as a whole).",
    )


def problem(
    status: int, detail: str, instance: str, field_errors: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if field_errors is not None:
        body["errors"] = _flatten(field_errors)
    return body


def _messages(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        out: list[str] = []
        for item in value:
            out.extend(_messages(item))
        return out
    if isinstance(value, dict):
        return [f"{k}: {m}" for k, v in value.items() for m in _messages(v)]
    return [str(value)]


def _flatten(field_errors: Mapping[str, Any] | list[Any]) -> dict[str, list[str]]:
    if not isinstance(field_errors, Mapping):
        return {"non_field_errors": _messages(field_errors)}
    return {
        ("non_field_errors" if field == "__all__" else str(field)): _messages(value)
        for field, value in field_errors.items()
    }


def _as_api_exception(exc: Exception) -> Exception:
    if isinstance(exc, errors.ValidationFailed):
        return exceptions.ValidationError(exc.errors)
    if isinstance(exc, errors.NotFound | Http404):
        return exceptions.NotFound(str(exc) or None)
    if isinstance(exc, errors.PermissionDenied | DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """``REST_FRAMEWORK["EXCEPTION_HANDLER"]``: DRF's handling (headers such as Retry-After and
    WWW-Authenticate), then the body rewritten as a problem."""
    exc = _as_api_exception(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 handling (and logging) takes it
    request = context.get("request")
    instance = request.path if request is not None else ""
    status = response.status_code
    if isinstance(exc, exceptions.ValidationError):
        detail = "The request is not valid; see errors."
        field_errors: Any = exc.detail
    else:
        data = response.data
        detail = str(data.get("detail", "")) if isinstance(data, dict) else str(data)
        field_errors = None
    response.data = problem(status, detail or HTTPStatus(status).phrase, instance, field_errors)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


@csrf_exempt  # no session, nothing to forge: any method gets the same 404 problem
def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Unknown paths under /api/: a problem, not the UI's HTML 404 (nor CSRF's HTML 403)."""
    return JsonResponse(
        problem(404, "No such API endpoint.", request.path), status=404,
        content_type=PROBLEM_CONTENT_TYPE,
    )  # fmt: skip
