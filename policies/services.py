"""Every write to resources and policies. One transaction each; access changes are published
(after commit) so gateways learn of them."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import hooks as account_hooks
from accounts.models import Account, Group
from firezone_site.errors import (
    NotFound,
    ValidationFailed,
    clean_name,
    integrity_errors_as_validation,
)
from firezone_site.events import AccessChanged, publish
from policies import evaluation, validation
from policies.models import Policy, Resource, Site

_CONSTRAINTS = {
    "resource_name_unique": ("name", "A resource with this name already exists."),
    "one_internet_resource_per_account": ("kind", "The account already has an internet resource."),
    "policy_group_resource_unique": ("group", "A policy for this group and resource exists."),
}


def _site(account: Account, site: Site | None) -> Site:
    if site is None or site.account_id != account.pk:
        raise ValidationFailed({"site": "Choose a site of this account."})
    return site


def check_resource(
    account: Account,
    *,
    name: str,
    kind: str,
    address: str,
    filters: Any,
    ip_stack: str,
    exclude: Resource | None = None,
) -> tuple[str, str, list[dict[str, Any]]]:
    errors: dict[str, str] = {}
    try:
        name = clean_name(name)
    except ValidationFailed as exc:
        errors["name"] = exc.errors["name"][0]
    if kind not in Resource.Kind.values:
        errors["kind"] = f"Choose one of: {', '.join(Resource.Kind.values)}."
    if ip_stack not in Resource.IpStack.values:
        errors["ip_stack"] = f"Choose one of: {', '.join(Resource.IpStack.values)}."
    normalized = address
    if "kind" not in errors:
        try:
            normalized = validation.normalize_resource_address(kind, address or "")
        except validation.InvalidInput as exc:
            errors["address"] = str(exc)
    canonical_filters: list[dict[str, Any]] = []
    try:
        if not isinstance(filters, list):
            raise validation.InvalidInput("filters", "Filters must be a list.")
        canonical_filters = validation.filters_to_json(validation.parse_filters(filters))
    except validation.InvalidInput as exc:
        errors["filters"] = str(exc)
    if "name" not in errors:
        taken = Resource.objects.for_account(account).filter(name=name)
        if exclude is not None:
            taken = taken.exclude(pk=exclude.pk)
        if taken.exists():
            errors["name"] = "A resource with this name already exists."
    if kind == Resource.Kind.INTERNET and "kind" not in errors:
        other = Resource.objects.for_account(account).filter(kind=Resource.Kind.INTERNET)
        if exclude is not None:
            other = other.exclude(pk=exclude.pk)
        if other.exists():
            errors["kind"] = "The account already has an internet resource."
    if errors:
        raise ValidationFailed(errors)
    return name, normalized, canonical_filters


@transaction.atomic
def create_resource(
    account: Account,
    *,
    name: str,
    kind: str,
    address: str,
    site: Site | None,
    filters: Any = None,
    address_description: str = "",
    ip_stack: str = Resource.IpStack.DUAL,
) -> Resource:
    site = _site(account, site)
    name, address, canonical = check_resource(
        account, name=name, kind=kind, address=address, filters=filters or [], ip_stack=ip_stack
    )
    with integrity_errors_as_validation(_CONSTRAINTS):
        return Resource.objects.create(
            account=account,
            name=name,
            kind=kind,
            address=address,
            address_description=(address_description or "").strip()[:512],
            site=site,
            filters=canonical,
            ip_stack=ip_stack,
        )


@transaction.atomic
def update_resource(
    resource: Resource,
    *,
    name: str | None = None,
    kind: str | None = None,
    address: str | None = None,
    site: Site | None = None,
    filters: Any = None,
    address_description: str | None = None,
    ip_stack: str | None = None,
) -> Resource:
    current = (
        Resource.objects.select_for_update()
        .filter(pk=resource.pk, account_id=resource.account_id)
        .first()
    )
    if current is None:
        raise NotFound("No such resource.")
    account = current.account
    new_site = _site(account, site) if site is not None else current.site
    name_, address_, filters_ = check_resource(
        account,
        name=current.name if name is None else name,
        kind=current.kind if kind is None else kind,
        address=current.address if address is None else address,
        filters=current.filters if filters is None else filters,
        ip_stack=current.ip_stack if ip_stack is None else ip_stack,
        exclude=current,
    )
    readdressed = (
        (kind is not None and kind != current.kind)
        or address_ != current.address
        or new_site.pk != current.site_id
        or (ip_stack is not None and ip_stack != current.ip_stack)
    )
    filters_changed = filters_ != current.filters
    current.name = name_
    current.kind = current.kind if kind is None else kind
    current.address = address_
    current.site = new_site
    current.filters = filters_
    if address_description is not None:
        current.address_description = address_description.strip()[:512]
    if ip_stack is not None:
        current.ip_stack = ip_stack
    with integrity_errors_as_validation(_CONSTRAINTS):
        current.save()
    revoked: frozenset[Any] = frozenset()
    if readdressed:
        # Flows name the old address (or site's gateway): they end, clients ask again.
        revoked = account_hooks.revoke_flows(
            current.account_id, resource_ids={current.pk}, reason="resource_readdressed"
        )
    if readdressed or filters_changed:
        publish(
            AccessChanged(
                account_id=current.account_id,
                reason="resource_readdressed" if readdressed else "resource_filters_changed",
                narrowed=readdressed,
                filters_only=not readdressed,
                resource_ids=frozenset({current.pk}),
                authorization_ids=revoked,
            )
        )
    return current


@transaction.atomic
def delete_resource(resource: Resource) -> None:
    current = (
        Resource.objects.select_for_update()
        .filter(pk=resource.pk, account_id=resource.account_id)
        .first()
    )
    if current is None:
        raise NotFound("No such resource.")
    revoked = account_hooks.revoke_flows(
        current.account_id, resource_ids={current.pk}, reason="resource_deleted"
    )
    event = AccessChanged(
        account_id=current.account_id,
        reason="resource_deleted",
        resource_ids=frozenset({current.pk}),
        policy_ids=frozenset(current.policies.values_list("pk", flat=True)),
        authorization_ids=revoked,
    )
    current.delete()
    publish(event)


def check_policy(
    account: Account,
    *,
    group: Group | None,
    resource: Resource | None,
    conditions: Any,
    description: str,
    exclude: Policy | None = None,
) -> list[dict[str, Any]]:
    errors: dict[str, str] = {}
    if group is None or group.account_id != account.pk:
        errors["group"] = "Choose a group of this account."
    if resource is None or resource.account_id != account.pk:
        errors["resource"] = "Choose a resource of this account."
    canonical: list[dict[str, Any]] = []
    try:
        if not isinstance(conditions, list):
            raise validation.InvalidInput("conditions", "Conditions must be a list.")
        canonical = evaluation.conditions_to_json(evaluation.parse_conditions(conditions))
    except validation.InvalidInput as exc:
        errors["conditions"] = str(exc)
    if len(description or "") > 1024:
        errors["description"] = "At most 1024 characters."
    if "group" not in errors and "resource" not in errors:
        taken = Policy.objects.for_account(account).filter(group=group, resource=resource)
        if exclude is not None:
            taken = taken.exclude(pk=exclude.pk)
        if taken.exists():
            errors["group"] = "A policy for this group and resource exists."
    if errors:
        raise ValidationFailed(errors)
    return canonical


@transaction.atomic
def create_policy(
    account: Account,
    *,
    group: Group | None,
    resource: Resource | None,
    conditions: Any = None,
    description: str = "",
) -> Policy:
    canonical = check_policy(
        account,
        group=group,
        resource=resource,
        conditions=conditions or [],
        description=description,
    )
    assert group is not None and resource is not None
    with integrity_errors_as_validation(_CONSTRAINTS):
        policy = Policy.objects.create(
            account=account,
            group=group,
            resource=resource,
            conditions=canonical,
            description=(description or "").strip(),
        )
    publish(_policy_event(policy, "policy_created", narrowed=False))
    return policy


def _policy_event(
    policy: Policy,
    reason: str,
    *,
    narrowed: bool = True,
    authorization_ids: frozenset[uuid.UUID] = frozenset(),
) -> AccessChanged:
    return AccessChanged(
        account_id=policy.account_id,
        reason=reason,
        narrowed=narrowed,
        group_ids=frozenset({policy.group_id}),
        resource_ids=frozenset({policy.resource_id}),
        policy_ids=frozenset({policy.pk}),
        authorization_ids=authorization_ids,
    )


def _locked_policy(policy: Policy) -> Policy:
    current = (
        Policy.objects.select_for_update()
        .filter(pk=policy.pk, account_id=policy.account_id)
        .first()
    )
    if current is None:
        raise NotFound("No such policy.")
    return current


@transaction.atomic
def update_policy(
    policy: Policy,
    *,
    group: Group | None = None,
    resource: Resource | None = None,
    conditions: Any = None,
    description: str | None = None,
) -> Policy:
    current = _locked_policy(policy)
    account = current.account
    new_group = group if group is not None else current.group
    new_resource = resource if resource is not None else current.resource
    canonical = check_policy(
        account,
        group=new_group,
        resource=new_resource,
        conditions=current.conditions if conditions is None else conditions,
        description=current.description if description is None else description,
        exclude=current,
    )
    # Any change of group, resource or conditions can narrow access: revoke and recompute.
    narrowed = (
        new_group.pk != current.group_id
        or new_resource.pk != current.resource_id
        or canonical != current.conditions
    )
    revoked: frozenset[Any] = frozenset()
    if narrowed:
        revoked = account_hooks.revoke_flows(
            current.account_id, policy_ids={current.pk}, reason="policy_updated"
        )
    event = AccessChanged(
        account_id=current.account_id,
        reason="policy_updated",
        narrowed=narrowed,
        group_ids=frozenset({current.group_id, new_group.pk}),
        resource_ids=frozenset({current.resource_id, new_resource.pk}),
        policy_ids=frozenset({current.pk}),
        authorization_ids=revoked,
    )
    current.group = new_group
    current.resource = new_resource
    current.conditions = canonical
    if description is not None:
        current.description = description.strip()
    with integrity_errors_as_validation(_CONSTRAINTS):
        current.save()
    publish(event)
    return current


@transaction.atomic
def disable_policy(policy: Policy) -> Policy:
    current = _locked_policy(policy)
    if current.disabled_at is None:
        current.disabled_at = timezone.now()
        current.save(update_fields=["disabled_at"])
        revoked = account_hooks.revoke_flows(
            current.account_id, policy_ids={current.pk}, reason="policy_disabled"
        )
        publish(_policy_event(current, "policy_disabled", authorization_ids=revoked))
    return current


@transaction.atomic
def enable_policy(policy: Policy) -> Policy:
    current = _locked_policy(policy)
    if current.disabled_at is not None:
        current.disabled_at = None
        current.save(update_fields=["disabled_at"])
        publish(_policy_event(current, "policy_enabled", narrowed=False))
    return current


@transaction.atomic
def delete_policy(policy: Policy) -> None:
    current = _locked_policy(policy)
    revoked = account_hooks.revoke_flows(
        current.account_id, policy_ids={current.pk}, reason="policy_deleted"
    )
    event = _policy_event(current, "policy_deleted", authorization_ids=revoked)
    current.delete()
    publish(event)
