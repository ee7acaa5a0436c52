from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.api.base import Scoped
from accounts.models import Group
from policies.models import Policy, Resource, Site


class FilterSerializer(serializers.Serializer[Any]):
    protocol = serializers.ChoiceField(choices=["tcp", "udp", "icmp"])
    ports = serializers.ListField(
        child=serializers.CharField(max_length=11), required=False,
        help_text='Ports and ranges, e.g. ["443", "8000-8080"]; empty = every port.',
    )  # fmt: skip


class ConditionSerializer(serializers.Serializer[Any]):
    property = serializers.CharField(max_length=64)
    operator = serializers.CharField(max_length=64)
    values = serializers.ListField(child=serializers.CharField(max_length=255))


class ResourceSerializer(serializers.ModelSerializer[Resource]):
    site = Scoped(Site)
    filters = FilterSerializer(many=True, required=False)

    class Meta:
        model = Resource
        fields = [
            "id", "name", "kind", "address", "address_description", "site", "filters", "ip_stack",
            "created_at",
        ]  # fmt: skip
        read_only_fields = ["created_at"]
        extra_kwargs = {"address": {"required": False}}


class PolicySerializer(serializers.ModelSerializer[Policy]):
    group = Scoped(Group)
    resource = Scoped(Resource)
    conditions = ConditionSerializer(many=True, required=False)

    class Meta:
        model = Policy
        fields = [
            "id",
            "group",
            "resource",
            "description",
            "conditions",
            "disabled_at",
            "created_at",
        ]
        read_only_fields = ["disabled_at", "created_at"]
