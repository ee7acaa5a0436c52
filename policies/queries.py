"""Account-scoped reads for resources and policies, and the database side of
policy evaluation (``allowed_resources``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import QuerySet

from accounts.models import Account, Actor, Membership
from policies import evaluation
from policies.models import Policy, Resource


def _rule(policy: Policy) -> evaluation.PolicyRule:
    # Stored conditions were validated on write; compiled forms are cached by content.
    return evaluation.PolicyRule(
        policy_id=policy.pk,
        group_id=policy.group_id,
        resource_id=policy.resource_id,
        conditions=evaluation.parse_conditions_cached(policy.conditions)
        if policy.conditions
        else (),
    )


def group_ids_of(actor: Actor) -> frozenset[uuid.UUID]:
    return frozenset(
        Membership.objects.for_account(actor.account_id)
        .filter(actor_id=actor.pk)
        .values_list("group_id", flat=True)
    )


@dataclass(frozen=True, slots=True)
class AllowedResource:
    resource: Resource
    decision: evaluation.Decision


def allowed_resources(
    actor: Actor,
    context: evaluation.ClientContext,
    *,
    resource_ids: set[uuid.UUID] | None = None,
    site_id: uuid.UUID | None = None,
) -> list[AllowedResource]:
    """The resources ``actor`` may reach in ``context``, each with the deciding Decision.

    Two queries: the actor's groups, then the enabled policies of those groups joined to their
    resources. Disabled actors and accounts get nothing.
    """
    if actor.disabled_at is not None:
        return []
    group_ids = group_ids_of(actor)
    if not group_ids:
        return []
    policies = (
        Policy.objects.for_account(actor.account_id)
        .filter(group_id__in=group_ids, disabled_at__isnull=True)
        .select_related("resource")
        .defer("description")
        # The evaluator picks the first of equally long grants: a stable order keeps that
        # choice (and so the recorded policy) the same from one call to the next.
        .order_by("id")
    )
    if resource_ids is not None:
        policies = policies.filter(resource_id__in=resource_ids)
    if site_id is not None:
        policies = policies.filter(resource__site_id=site_id)
    by_resource: dict[uuid.UUID, tuple[Resource, list[evaluation.PolicyRule]]] = {}
    for policy in policies:
        entry = by_resource.get(policy.resource_id)
        if entry is None:
            entry = (policy.resource, [])
            by_resource[policy.resource_id] = entry
        entry[1].append(_rule(policy))
    allowed: list[AllowedResource] = []
    for resource, rules in by_resource.values():
        decision = evaluation.evaluate(group_ids, rules, context)
        if decision.allowed:
            allowed.append(AllowedResource(resource=resource, decision=decision))
    allowed.sort(key=lambda a: a.resource.name)
    return allowed


def evaluate_access(
    actor: Actor, resource: Resource, context: evaluation.ClientContext
) -> evaluation.Decision:
    """One actor and one resource: the decision with its violated conditions."""
    if actor.account_id != resource.account_id or actor.disabled_at is not None:
        return evaluation.Decision(allowed=False, policy_id=None, violated=(), expires_at=None)
    group_ids = group_ids_of(actor)
    rules = [
        _rule(p)
        for p in Policy.objects.for_account(actor.account_id)
        .filter(resource_id=resource.pk, disabled_at__isnull=True)
        .order_by("id")
    ]
    return evaluation.evaluate(group_ids, rules, context)


def resources(account: Account | uuid.UUID) -> QuerySet[Resource]:
    return Resource.objects.for_account(account).select_related("site")


def policies(account: Account | uuid.UUID) -> QuerySet[Policy]:
    return Policy.objects.for_account(account).select_related("group", "resource")


def policies_requiring_provider(
    account_id: uuid.UUID, provider_id: uuid.UUID
) -> frozenset[uuid.UUID]:
    """The account's policies with a ``provider_id is_in [...]`` condition naming ``provider_id``
    (provides ``accounts.hooks.policies_requiring_provider``)."""
    wanted = str(provider_id)
    return frozenset(
        policy.pk
        for policy in Policy.objects.for_account(account_id).only("id", "conditions")
        if policy.conditions
        and any(
            c.property == "provider_id" and c.operator == "is_in" and wanted in c.values
            for c in evaluation.parse_conditions_cached(policy.conditions)
        )
    )
