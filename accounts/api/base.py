"""The base of every app's API viewsets: bearer authentication, the manage permission, account
scoping, ETag/If-Match, and writes that go through a service inside one transaction."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from django.db import models, transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.authentication import ApiClient, BearerTokenAuthentication, MayManageAccount
from accounts.models import Account
from firezone_site.api.etags import check_if_match, etag_of

M = TypeVar("M", bound=models.Model)
UUID_PATTERN = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"


class Scoped(serializers.PrimaryKeyRelatedField):  # type: ignore[type-arg]
    """A reference to another object, looked up in the request's account only: another
    account's id is "does not exist", exactly like an id that never existed."""

    def __init__(self, model: type[models.Model], **kwargs: Any) -> None:
        self.model = model
        kwargs.setdefault("queryset", model._default_manager.none())
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Any]:
        view = self.context.get("view")
        account = getattr(view, "account", None)
        if account is None:
            return self.model._default_manager.none()
        return self.model._default_manager.for_account(account)  # type: ignore[attr-defined, no-any-return]


class AccountViewSet(viewsets.GenericViewSet[M], Generic[M]):
    """Subclasses give ``model``, ``scoped(account)`` and, for writes, ``do_create``,
    ``do_update`` and ``do_destroy`` (each a call of the app's service)."""

    model: type[M]
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [MayManageAccount]
    lookup_value_regex = UUID_PATTERN

    @property
    def account(self) -> Account | None:
        user = getattr(self.request, "user", None) if hasattr(self, "request") else None
        return user.account if isinstance(user, ApiClient) else None

    @property
    def client(self) -> ApiClient:
        user = self.request.user
        assert isinstance(user, ApiClient)
        return user

    def scoped(self, account: Account) -> QuerySet[M]:
        return self.model._default_manager.for_account(account)  # type: ignore[attr-defined, no-any-return]

    def get_queryset(self) -> QuerySet[M]:
        account = self.account
        if account is None:  # schema generation
            return self.model._default_manager.none()
        return self.scoped(account)

    def represent(self, instance: M, status_code: int = status.HTTP_200_OK) -> Response:
        data = self.get_serializer(instance).data
        return Response(data, status=status_code, headers={"ETag": etag_of(data)})

    def locked_object(self) -> M:
        """The object of this request, row-locked, after its If-Match precondition (call inside
        a transaction)."""
        lookup = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        queryset = self.get_queryset().select_for_update(of=("self",))
        instance: M = get_object_or_404(queryset, **{self.lookup_field: lookup})
        self.check_object_permissions(self.request, instance)
        check_if_match(self.request, etag_of(self.get_serializer(instance).data))
        return instance

    def current(self, instance: M) -> M:
        """Re-read after a write, with the list's joins, for the response."""
        return self.get_queryset().get(pk=instance.pk)


class RetrieveMixin(Generic[M]):
    def retrieve(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.represent(self.get_object())  # type: ignore[no-any-return]


class ListMixin(mixins.ListModelMixin):
    pass


class CreateMixin(Generic[M]):
    def do_create(self, data: dict[str, Any]) -> M:
        raise NotImplementedError

    def create(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            instance = self.do_create(dict(serializer.validated_data))
        return self.represent(self.current(instance), status.HTTP_201_CREATED)  # type: ignore[no-any-return]


class UpdateMixin(Generic[M]):
    def do_update(self, instance: M, data: dict[str, Any]) -> M:
        raise NotImplementedError

    def _update(self: Any, request: Request, partial: bool) -> Response:
        with transaction.atomic():
            instance = self.locked_object()
            serializer = self.get_serializer(instance, data=request.data, partial=partial)
            serializer.is_valid(raise_exception=True)
            instance = self.do_update(instance, dict(serializer.validated_data))
        return self.represent(self.current(instance))  # type: ignore[no-any-return]

    def update(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._update(request, partial=False)  # type: ignore[no-any-return]

    def partial_update(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._update(request, partial=True)  # type: ignore[no-any-return]


class DestroyMixin(Generic[M]):
    def do_destroy(self, instance: M) -> None:
        raise NotImplementedError

    def destroy(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        with transaction.atomic():
            self.do_destroy(self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


def action_response(view: Any, instance: Any) -> Response:
    return view.represent(view.current(instance))  # type: ignore[no-any-return]
