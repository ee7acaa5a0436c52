from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import (
    AccountViewSet,
    CreateMixin,
    DestroyMixin,
    ListMixin,
    RetrieveMixin,
    UpdateMixin,
    action_response,
)
from accounts.models import Account
from policies import queries, services
from policies.api import serializers as s
from policies.models import Policy, Resource


def _plain(items: Any) -> Any:
    return None if items is None else [dict(item) for item in items]


class ResourceViewSet(
    ListMixin, RetrieveMixin[Resource], CreateMixin[Resource], UpdateMixin[Resource],
    DestroyMixin[Resource], AccountViewSet[Resource],
):  # fmt: skip
    model = Resource
    serializer_class = s.ResourceSerializer
    filterset_fields = ["kind", "site", "name"]
    ordering_fields = ["created_at", "name"]

    def scoped(self, account: Account) -> QuerySet[Resource]:
        return queries.resources(account)

    def do_create(self, data: dict[str, Any]) -> Resource:
        assert self.account is not None
        return services.create_resource(
            self.account, name=data["name"], kind=data["kind"], address=data.get("address", ""),
            site=data["site"], filters=_plain(data.get("filters")),
            address_description=data.get("address_description", ""),
            ip_stack=data.get("ip_stack", Resource.IpStack.DUAL),
        )  # fmt: skip

    def do_update(self, instance: Resource, data: dict[str, Any]) -> Resource:
        return services.update_resource(
            instance, name=data.get("name"), kind=data.get("kind"), address=data.get("address"),
            site=data.get("site"), filters=_plain(data.get("filters")),
            address_description=data.get("address_description"), ip_stack=data.get("ip_stack"),
        )  # fmt: skip

    def do_destroy(self, instance: Resource) -> None:
        services.delete_resource(instance)


class PolicyViewSet(
    ListMixin, RetrieveMixin[Policy], CreateMixin[Policy], UpdateMixin[Policy],
    DestroyMixin[Policy], AccountViewSet[Policy],
):  # fmt: skip
    model = Policy
    serializer_class = s.PolicySerializer
    filterset_fields = ["group", "resource"]
    ordering_fields = ["created_at"]

    def scoped(self, account: Account) -> QuerySet[Policy]:
        # Without queries.policies' joins: the representation names group and resource by id.
        return Policy.objects.for_account(account)

    def do_create(self, data: dict[str, Any]) -> Policy:
        assert self.account is not None
        return services.create_policy(
            self.account, group=data["group"], resource=data["resource"],
            conditions=_plain(data.get("conditions")), description=data.get("description", ""),
        )  # fmt: skip

    def do_update(self, instance: Policy, data: dict[str, Any]) -> Policy:
        return services.update_policy(
            instance, group=data.get("group"), resource=data.get("resource"),
            conditions=_plain(data.get("conditions")), description=data.get("description"),
        )  # fmt: skip

    def do_destroy(self, instance: Policy) -> None:
        services.delete_policy(instance)

    @extend_schema(request=None, responses=s.PolicySerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str) -> Response:
        """Disable the policy: the flows it allowed end now."""
        with transaction.atomic():
            policy = services.disable_policy(self.locked_object())
        return action_response(self, policy)

    @extend_schema(request=None, responses=s.PolicySerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str) -> Response:
        with transaction.atomic():
            policy = services.enable_policy(self.locked_object())
        return action_response(self, policy)
