from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.api.base import Scoped
from accounts.models import Actor, AuthProvider, Directory, Group, Membership, Token


class ActorSerializer(serializers.ModelSerializer[Actor]):
    class Meta:
        model = Actor
        fields = [
            "id", "type", "email", "name", "disabled_at", "directory", "provider_id", "created_at",
        ]  # fmt: skip
        read_only_fields = ["disabled_at", "directory", "provider_id", "created_at"]
        extra_kwargs = {"email": {"required": False}}


class GroupSerializer(serializers.ModelSerializer[Group]):
    class Meta:
        model = Group
        fields = ["id", "name", "kind", "directory", "provider_id", "created_at"]
        read_only_fields = ["kind", "directory", "provider_id", "created_at"]


class MembershipSerializer(serializers.ModelSerializer[Membership]):
    group = Scoped(Group)
    actor = Scoped(Actor)

    class Meta:
        model = Membership
        fields = ["id", "group", "actor", "created_at"]
        read_only_fields = ["created_at"]


class MemberListSerializer(serializers.Serializer[Any]):
    """The exact member list of a group (bulk replace)."""

    actors = Scoped(Actor, many=True)


class AuthProviderSerializer(serializers.ModelSerializer[AuthProvider]):
    class Meta:
        model = AuthProvider
        fields = [
            "id", "name", "kind", "context", "client_session_lifetime", "portal_session_lifetime",
            "disabled_at", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class DirectorySerializer(serializers.ModelSerializer[Directory]):
    class Meta:
        model = Directory
        fields = ["id", "name", "kind", "last_synced_at", "last_error", "disabled_at", "created_at"]
        read_only_fields = fields


class ApiTokenSerializer(serializers.ModelSerializer[Token]):
    actor = Scoped(Actor, help_text="An API client or service account of the account.")
    expires_at = serializers.DateTimeField(help_text="Required: every API token expires.")

    class Meta:
        model = Token
        fields = [
            "id", "name", "actor", "expires_at", "revoked_at", "last_used_at", "last_used_ip",
            "created_at",
        ]  # fmt: skip
        read_only_fields = ["revoked_at", "last_used_at", "last_used_ip", "created_at"]
        extra_kwargs = {"name": {"required": False}}


class IssuedApiTokenSerializer(ApiTokenSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once, never stored.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "secret"]
