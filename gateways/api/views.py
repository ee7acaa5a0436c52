from __future__ import annotations

from typing import Any

import django_filters
from django.db import transaction
from django.db.models import BooleanField, Case, Q, QuerySet, Value, When
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services as account_services
from accounts.api.base import (
    AccountViewSet,
    CreateMixin,
    DestroyMixin,
    ListMixin,
    RetrieveMixin,
    UpdateMixin,
    action_response,
)
from accounts.models import Account, Token
from gateways import configs, queries, services
from gateways.api import serializers as s
from gateways.models import Authorization, ClientDevice, Gateway
from policies.models import Site


class SiteViewSet(
    ListMixin, RetrieveMixin[Site], CreateMixin[Site], UpdateMixin[Site], DestroyMixin[Site],
    AccountViewSet[Site],
):  # fmt: skip
    model = Site
    serializer_class = s.SiteSerializer
    filterset_fields = ["name"]
    ordering_fields = ["created_at", "name"]

    def scoped(self, account: Account) -> QuerySet[Site]:
        return queries.sites(account)

    def do_create(self, data: dict[str, Any]) -> Site:
        assert self.account is not None
        return services.create_site(self.account, name=data["name"])

    def do_update(self, instance: Site, data: dict[str, Any]) -> Site:
        return services.rename_site(instance, name=data.get("name", instance.name))

    def do_destroy(self, instance: Site) -> None:
        services.delete_site(instance)


class GatewayViewSet(
    ListMixin, RetrieveMixin[Gateway], DestroyMixin[Gateway], AccountViewSet[Gateway]
):
    """Gateways join by themselves (with a gateway token); deleting one disconnects it and ends
    its flows (revoke its token too, or it joins again)."""

    model = Gateway
    serializer_class = s.GatewaySerializer
    filterset_fields = ["site", "online"]
    ordering_fields = ["created_at", "name", "last_seen_at"]

    def scoped(self, account: Account) -> QuerySet[Gateway]:
        return queries.gateways(account)

    def do_destroy(self, instance: Gateway) -> None:
        services.delete_gateway(instance)


class GatewayTokenViewSet(
    ListMixin, RetrieveMixin[Token], CreateMixin[Token], DestroyMixin[Token], AccountViewSet[Token]
):
    """Gateway tokens, each bound to a site. Creating one returns its secret once; deleting one
    revokes it (gateways connected with it are disconnected)."""

    model = Token
    serializer_class = s.GatewayTokenSerializer
    filterset_fields = {"gateway_binding__site": ["exact"]}
    ordering_fields = ["created_at", "last_used_at"]

    def scoped(self, account: Account) -> QuerySet[Token]:
        return (
            Token.objects.for_account(account)
            .filter(kind=Token.Kind.GATEWAY, gateway_binding__isnull=False)
            .select_related("gateway_binding__site")
        )

    def get_serializer_class(self) -> Any:
        return (
            s.IssuedGatewayTokenSerializer if self.action == "create" else s.GatewayTokenSerializer
        )

    def do_create(self, data: dict[str, Any]) -> Token:
        site: Site = data["gateway_binding"]["site"]
        issued = services.issue_gateway_token(site, name=data.get("name", ""))
        self._secret = issued.secret
        return issued.token

    def current(self, instance: Token) -> Token:
        token = super().current(instance)
        if self.action == "create":
            token.secret = self._secret  # type: ignore[attr-defined]
        return token

    def do_destroy(self, instance: Token) -> None:
        account_services.revoke_token(instance)


class DeviceViewSet(ListMixin, RetrieveMixin[ClientDevice], AccountViewSet[ClientDevice]):
    """Every device (client agents and static configs), read-only here: static devices are
    managed under /static-devices (client agents' own lifecycle is the client websocket's)."""

    model = ClientDevice
    serializer_class = s.DeviceSerializer
    filterset_fields = ["actor", "kind"]
    ordering_fields = ["created_at", "name", "last_seen_at"]

    def scoped(self, account: Account) -> QuerySet[ClientDevice]:
        # Without queries.devices' join: the representation names the actor by id.
        return ClientDevice.objects.for_account(account)


class StaticDeviceViewSet(
    ListMixin, RetrieveMixin[ClientDevice], CreateMixin[ClientDevice],
    DestroyMixin[ClientDevice], AccountViewSet[ClientDevice],
):  # fmt: skip
    """Standard WireGuard devices (wg-quick configs) that the portal keeps in line with policy."""

    model = ClientDevice
    serializer_class = s.StaticDeviceSerializer
    filterset_fields = ["actor"]
    ordering_fields = ["created_at", "name"]

    def scoped(self, account: Account) -> QuerySet[ClientDevice]:
        return ClientDevice.objects.for_account(account).filter(kind=ClientDevice.Kind.STATIC)

    def get_serializer_class(self) -> Any:
        if self.action == "create":
            return s.RegisteredStaticDeviceSerializer
        return s.StaticDeviceSerializer

    def do_create(self, data: dict[str, Any]) -> ClientDevice:
        registered = services.register_static_device(
            data["actor"], name=data["name"], public_key=data.get("public_key")
        )
        self._config = registered.config.text
        return registered.device

    def current(self, instance: ClientDevice) -> ClientDevice:
        device = super().current(instance)
        if self.action == "create":
            device.config = self._config  # type: ignore[attr-defined]
        return device

    def do_destroy(self, instance: ClientDevice) -> None:
        services.delete_device(instance)

    @extend_schema(request=None, responses=s.StaticDeviceSerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str) -> Response:
        """Disable the device: gateways drop its peer at once; its config stops working."""
        with transaction.atomic():
            device = services.disable_device(self.locked_object())
        return action_response(self, device)

    @extend_schema(request=None, responses=s.StaticDeviceSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str) -> Response:
        with transaction.atomic():
            device = services.enable_device(self.locked_object())
        return action_response(self, device)

    @extend_schema(
        responses={(200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, "wg-quick config")}
    )
    @action(detail=True, methods=["get"])
    def config(self, request: Request, pk: str) -> HttpResponse:
        """The device's current wg-quick config (without the private key, which is never
        stored)."""
        config = configs.device_config(self.get_object())
        response = HttpResponse(config.text, content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{config.filename}"'
        response["X-Config-Version"] = str(config.version)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        responses={(200, "image/svg+xml"): OpenApiResponse(OpenApiTypes.STR, "QR code (SVG)")}
    )
    @action(detail=True, methods=["get"])
    def qr(self, request: Request, pk: str) -> HttpResponse:
        """The config as a QR code for the mobile WireGuard apps."""
        config = configs.device_config(self.get_object())
        response = HttpResponse(configs.qr_svg(config.text), content_type="image/svg+xml")
        response["Cache-Control"] = "no-store"
        return response


class AuthorizationFilter(django_filters.FilterSet):  # type: ignore[misc]
    active = django_filters.BooleanFilter(field_name="active")

    class Meta:
        model = Authorization
        fields = ["actor", "resource", "gateway", "policy", "device", "active"]


class AuthorizationViewSet(ListMixin, RetrieveMixin[Authorization], AccountViewSet[Authorization]):
    """Who reached what, through which gateway, until when (the audit trail)."""

    model = Authorization
    serializer_class = s.AuthorizationSerializer
    filterset_class = AuthorizationFilter
    ordering_fields = ["created_at", "expires_at"]

    def scoped(self, account: Account) -> QuerySet[Authorization]:
        now = timezone.now()
        return queries.authorizations(account).annotate(
            active=Case(
                When(
                    Q(revoked_at__isnull=True)
                    & (Q(expires_at__isnull=True) | Q(expires_at__gt=now)),
                    then=Value(True),
                ),
                default=Value(False),
                output_field=BooleanField(),
            )
        )
