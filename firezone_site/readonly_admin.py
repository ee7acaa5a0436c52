"""The Django admin is a read-only window on tenant data.

Every write to tenant data goes through a service (validation, one transaction, events after
commit); the Django admin would write around all of that. So every tenant model is registered with
:class:`ReadOnlyAdmin`: no add, change or delete for anyone, superusers included, and no raw-id or
inline widgets that could point a row at another account's objects.

Who sees what: a superuser (created by the operator with ``createsuperuser``) sees every account;
any other staff user sees only the rows of the account its actor belongs to, and only the models it
holds a ``view_*`` permission for. A staff user without an actor sees nothing. The list filters
offer only related objects that occur in that scoped queryset, so the sidebar cannot list other
accounts either.

Models moved between apps only change where they are registered; nothing here names them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db.models import ForeignKey, Model, QuerySet
from django.http import HttpRequest

_M = TypeVar("_M", bound=Model)


def staff_account_id(request: HttpRequest) -> Any:
    """The account the signed-in staff user belongs to, or None (no actor: sees nothing)."""
    actor = getattr(request.user, "actor", None)
    return None if actor is None else actor.account_id


class ReadOnlyAdmin(admin.ModelAdmin[_M]):
    #: The field that names the row's account; ``"pk"`` for the account model itself.
    account_field = "account"

    # Nothing editable: no raw-id fields, no inlines, no bulk actions (the default one deletes).
    raw_id_fields = ()
    inlines = ()
    actions = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[_M]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        account_id = staff_account_id(request)
        if account_id is None:
            return queryset.none()
        return queryset.filter(**{self.account_field: account_id})

    def get_list_filter(self, request: HttpRequest) -> Any:
        # The plain related-field filter lists every row of the related model (every account);
        # the related-only filter lists the values present in the scoped queryset.
        filters: list[Any] = []
        for entry in super().get_list_filter(request):
            if isinstance(entry, str) and self._is_foreign_key(entry):
                filters.append((entry, admin.RelatedOnlyFieldListFilter))
            else:
                filters.append(entry)
        return filters

    def _is_foreign_key(self, name: str) -> bool:
        if "__" in name:
            return False
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:
            return False
        return isinstance(field, ForeignKey)
