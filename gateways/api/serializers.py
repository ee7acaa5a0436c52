from __future__ import annotations

from rest_framework import serializers

from accounts.api.base import Scoped
from accounts.models import Actor, Token
from gateways.models import Authorization, ClientDevice, Gateway
from policies.models import Site


class SiteSerializer(serializers.ModelSerializer[Site]):
    class Meta:
        model = Site
        fields = ["id", "name", "created_at"]
        read_only_fields = ["created_at"]


class GatewaySerializer(serializers.ModelSerializer[Gateway]):
    class Meta:
        model = Gateway
        fields = [
            "id", "site", "external_id", "name", "public_key", "ipv4", "ipv6", "online",
            "last_seen_at", "last_seen_remote_ip", "last_seen_version", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class GatewayTokenSerializer(serializers.ModelSerializer[Token]):
    site = Scoped(Site, source="gateway_binding.site")

    class Meta:
        model = Token
        fields = [
            "id", "name", "site", "expires_at", "revoked_at", "grace_until", "last_used_at",
            "created_at",
        ]  # fmt: skip
        read_only_fields = ["expires_at", "revoked_at", "grace_until", "last_used_at", "created_at"]
        extra_kwargs = {"name": {"required": False}}


class IssuedGatewayTokenSerializer(GatewayTokenSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once, never stored.")

    class Meta(GatewayTokenSerializer.Meta):
        fields = [*GatewayTokenSerializer.Meta.fields, "secret"]


class DeviceSerializer(serializers.ModelSerializer[ClientDevice]):
    class Meta:
        model = ClientDevice
        fields = [
            "id", "actor", "kind", "name", "public_key", "ipv4", "ipv6", "verified_at",
            "disabled_at", "last_seen_at", "last_seen_remote_ip", "last_seen_version", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class StaticDeviceSerializer(serializers.ModelSerializer[ClientDevice]):
    actor = Scoped(Actor)
    public_key = serializers.CharField(
        max_length=44, required=False,
        help_text="The device's WireGuard public key; omit it and the portal generates the pair "
        "(the private key is then in the config, once, in the create response).",
    )  # fmt: skip

    class Meta:
        model = ClientDevice
        fields = [
            "id", "actor", "name", "public_key", "ipv4", "ipv6", "disabled_at", "config_version",
            "created_at",
        ]  # fmt: skip
        read_only_fields = ["ipv4", "ipv6", "disabled_at", "config_version", "created_at"]


class RegisteredStaticDeviceSerializer(StaticDeviceSerializer):
    config = serializers.CharField(
        read_only=True, help_text="The wg-quick config; with the private key when generated."
    )

    class Meta(StaticDeviceSerializer.Meta):
        fields = [*StaticDeviceSerializer.Meta.fields, "config"]


class AuthorizationSerializer(serializers.ModelSerializer[Authorization]):
    active = serializers.BooleanField(read_only=True)

    class Meta:
        model = Authorization
        fields = [
            "id", "actor", "device", "resource", "policy", "gateway", "actor_email",
            "resource_name", "resource_address", "client_remote_ip", "expires_at", "revoked_at",
            "revoke_reason", "active", "created_at",
        ]  # fmt: skip
        read_only_fields = fields
