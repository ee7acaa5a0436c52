from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services
from accounts.api import serializers as s
from accounts.api.base import (
    AccountViewSet,
    CreateMixin,
    DestroyMixin,
    ListMixin,
    RetrieveMixin,
    UpdateMixin,
    action_response,
)
from accounts.models import Account, Actor, AuthProvider, Directory, Group, Membership, Token
from firezone_site.errors import ValidationFailed


class ActorViewSet(
    ListMixin, RetrieveMixin[Actor], CreateMixin[Actor], UpdateMixin[Actor],
    DestroyMixin[Actor], AccountViewSet[Actor],
):  # fmt: skip
    model = Actor
    serializer_class = s.ActorSerializer
    filterset_fields = ["type", "email"]
    ordering_fields = ["created_at", "name", "email"]

    def do_create(self, data: dict[str, Any]) -> Actor:
        assert self.account is not None
        return services.create_actor(
            self.account,
            email=data.get("email", ""),
            name=data["name"],
            type=data.get("type", Actor.Type.USER),
        )

    def do_update(self, instance: Actor, data: dict[str, Any]) -> Actor:
        services.check_may_manage(self.client.actor, instance)
        return services.update_actor(
            instance, name=data.get("name"), email=data.get("email"), type=data.get("type")
        )

    def do_destroy(self, instance: Actor) -> None:
        services.check_may_manage(self.client.actor, instance)
        services.delete_actor(instance)

    @extend_schema(request=None, responses=s.ActorSerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str) -> Response:
        """Disable the actor: its tokens, sessions and flows end."""
        with transaction.atomic():
            actor = self.locked_object()
            services.check_may_manage(self.client.actor, actor)
            services.disable_actor(actor)
        return action_response(self, actor)

    @extend_schema(request=None, responses=s.ActorSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str) -> Response:
        with transaction.atomic():
            actor = self.locked_object()
            services.check_may_manage(self.client.actor, actor)
            services.enable_actor(actor)
        return action_response(self, actor)


class GroupViewSet(
    ListMixin, RetrieveMixin[Group], CreateMixin[Group], UpdateMixin[Group],
    DestroyMixin[Group], AccountViewSet[Group],
):  # fmt: skip
    model = Group
    serializer_class = s.GroupSerializer
    filterset_fields = ["kind", "name"]
    ordering_fields = ["created_at", "name"]

    def get_serializer_class(self) -> Any:
        return s.MemberListSerializer if self.action == "members" else s.GroupSerializer

    def do_create(self, data: dict[str, Any]) -> Group:
        assert self.account is not None
        return services.create_group(self.account, name=data["name"])

    def do_update(self, instance: Group, data: dict[str, Any]) -> Group:
        return services.rename_group(instance, name=data.get("name", instance.name))

    def do_destroy(self, instance: Group) -> None:
        services.delete_group(instance)

    @extend_schema(request=s.MemberListSerializer, responses=s.MemberListSerializer)
    @action(detail=True, methods=["put"])
    def members(self, request: Request, pk: str) -> Response:
        """Replace the group's members with exactly these actors (idempotent)."""
        with transaction.atomic():
            group = self.locked_object_plain()
            body = s.MemberListSerializer(data=request.data, context=self.get_serializer_context())
            body.is_valid(raise_exception=True)
            services.set_members(group, list(body.validated_data["actors"]))
        actors = list(group.memberships.values_list("actor_id", flat=True))
        return Response({"actors": sorted(str(a) for a in actors)})

    def locked_object_plain(self) -> Group:
        from django.shortcuts import get_object_or_404

        queryset = self.get_queryset().select_for_update(of=("self",))
        return get_object_or_404(queryset, pk=self.kwargs["pk"])


class MembershipViewSet(
    ListMixin, RetrieveMixin[Membership], CreateMixin[Membership], DestroyMixin[Membership],
    AccountViewSet[Membership],
):  # fmt: skip
    model = Membership
    serializer_class = s.MembershipSerializer
    filterset_fields = ["group", "actor"]
    ordering_fields = ["created_at"]

    def do_create(self, data: dict[str, Any]) -> Membership:
        return services.add_member(data["group"], data["actor"])

    def do_destroy(self, instance: Membership) -> None:
        services.remove_member(instance.group, instance.actor)


class AuthProviderViewSet(ListMixin, RetrieveMixin[AuthProvider], AccountViewSet[AuthProvider]):
    model = AuthProvider
    serializer_class = s.AuthProviderSerializer
    filterset_fields = ["kind", "context"]
    ordering_fields = ["created_at", "name"]


class DirectoryViewSet(ListMixin, RetrieveMixin[Directory], AccountViewSet[Directory]):
    model = Directory
    serializer_class = s.DirectorySerializer
    filterset_fields = ["kind"]
    ordering_fields = ["created_at", "name"]


class ApiTokenViewSet(
    ListMixin, RetrieveMixin[Token], CreateMixin[Token], DestroyMixin[Token], AccountViewSet[Token]
):
    """API tokens. Creating one returns its secret once; deleting one revokes it."""

    model = Token
    serializer_class = s.ApiTokenSerializer
    filterset_fields = ["actor"]
    ordering_fields = ["created_at", "expires_at", "last_used_at"]

    def scoped(self, account: Account) -> QuerySet[Token]:
        return Token.objects.for_account(account).filter(kind=Token.Kind.API)

    def get_serializer_class(self) -> Any:
        return s.IssuedApiTokenSerializer if self.action == "create" else s.ApiTokenSerializer

    def do_create(self, data: dict[str, Any]) -> Token:
        assert self.account is not None
        actor: Actor = data["actor"]
        if actor.type not in (Actor.Type.API_CLIENT, Actor.Type.SERVICE_ACCOUNT):
            raise ValidationFailed(
                {"actor": "API tokens belong to a service account or API client."}
            )
        issued = services.create_token(
            self.account, kind=Token.Kind.API, actor=actor, name=data.get("name", ""),
            expires_at=data["expires_at"],
        )  # fmt: skip
        self._secret = issued.secret
        return issued.token

    def current(self, instance: Token) -> Token:
        token = super().current(instance)
        if self.action == "create":
            token.secret = self._secret  # type: ignore[attr-defined]
        return token

    @extend_schema(responses={status.HTTP_204_NO_CONTENT: None})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Revoke the token (the row stays, for its audit fields, until the cleanup job)."""
        with transaction.atomic():
            services.revoke_token(self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
