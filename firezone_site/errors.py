"""Errors services raise. Views, serializers and consumers turn them into form errors, RFC 9457
problem details or close codes; nothing below them ever lets an IntegrityError escape."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from django.db import IntegrityError


class ServiceError(Exception):
    """Base class: a request that cannot be carried out, with a message safe to show."""


class ValidationFailed(ServiceError):
    def __init__(self, errors: Mapping[str, str | list[str]]) -> None:
        self.errors: dict[str, list[str]] = {
            field: [msg] if isinstance(msg, str) else list(msg) for field, msg in errors.items()
        }
        super().__init__("; ".join(f"{f}: {' '.join(m)}" for f, m in self.errors.items()))


def clean_name(value: str, field: str = "name", max_length: int = 255) -> str:
    """A required, stripped display name of at most ``max_length`` characters."""
    value = (value or "").strip()
    if not value:
        raise ValidationFailed({field: "This field is required."})
    if len(value) > max_length:
        raise ValidationFailed({field: f"At most {max_length} characters."})
    return value


class NotFound(ServiceError):
    pass


class PermissionDenied(ServiceError):
    pass


@contextmanager
def integrity_errors_as_validation(known: Mapping[str, tuple[str, str]]) -> Iterator[None]:
    """Map a violated constraint (by name) to ``ValidationFailed({field: message})``.

    Services check invariants before writing; this covers the race where two requests pass the
    check at once and the database constraint decides.
    """
    try:
        yield
    except IntegrityError as exc:
        text = str(exc)
        for constraint, (field, message) in known.items():
            if constraint in text:
                raise ValidationFailed({field: message}) from exc
        raise ValidationFailed({"__all__": "This change conflicts with existing data."}) from exc
