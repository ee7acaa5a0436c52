"""Writes for sites, tunnel addresses, gateways and client devices."""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts import services as account_services
from accounts.models import Account, Token
from firezone_site.errors import (
    NotFound,
    ServiceError,
    ValidationFailed,
    integrity_errors_as_validation,
)
from firezone_site.events import AccessChanged, publish
from gateways.models import Site, TunnelAddress

TUNNEL_V4 = ipaddress.IPv4Network(settings.FZ_TUNNEL_IPV4)
TUNNEL_V6 = ipaddress.IPv6Network(settings.FZ_TUNNEL_IPV6)
# Slot 0 is the network address; the last slot would be the IPv4 broadcast address.
FIRST_SLOT = 1
LAST_SLOT = TUNNEL_V4.num_addresses - 2
MAX_ALLOCATION_ATTEMPTS = 64

_CONSTRAINTS = {"site_name_unique": ("name", "A site with this name already exists.")}


class PoolExhausted(ServiceError):
    pass


@dataclass(frozen=True)
class Addresses:
    slot: TunnelAddress
    ipv4: str
    ipv6: str


def slot_addresses(slot: int) -> tuple[str, str]:
    return str(TUNNEL_V4.network_address + slot), str(TUNNEL_V6.network_address + slot)


def allocate_tunnel_address(
    account: Account | uuid.UUID, *, rng: secrets.SystemRandom | None = None
) -> Addresses:
    """Allocate a free (IPv4, IPv6) pair for the account.

    A random slot is tried in a savepoint; the (account, slot) unique constraint decides races, so
    concurrent allocations on PostgreSQL never hand out the same address. Must run inside the
    caller's transaction (the slot belongs to the gateway/device created with it).
    """
    account_id = account.pk if isinstance(account, Account) else account
    rand = rng or secrets.SystemRandom()
    for _ in range(MAX_ALLOCATION_ATTEMPTS):
        slot = rand.randint(FIRST_SLOT, LAST_SLOT)
        try:
            with transaction.atomic():
                row = TunnelAddress.objects.create(account_id=account_id, slot=slot)
        except IntegrityError:
            continue
        ipv4, ipv6 = slot_addresses(slot)
        return Addresses(slot=row, ipv4=ipv4, ipv6=ipv6)
    raise PoolExhausted("No free tunnel address found; the account's address pool is full.")


# --- sites -------------------------------------------------------------------------------------


def _clean_name(value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationFailed({"name": "This field is required."})
    if len(value) > 255:
        raise ValidationFailed({"name": "At most 255 characters."})
    return value


@transaction.atomic
def create_site(account: Account, *, name: str) -> Site:
    name = _clean_name(name)
    if Site.objects.for_account(account).filter(name=name).exists():
        raise ValidationFailed({"name": "A site with this name already exists."})
    with integrity_errors_as_validation(_CONSTRAINTS):
        return Site.objects.create(account=account, name=name)


@transaction.atomic
def rename_site(site: Site, *, name: str) -> Site:
    name = _clean_name(name)
    taken = Site.objects.for_account(site.account_id).filter(name=name).exclude(pk=site.pk)
    if taken.exists():
        raise ValidationFailed({"name": "A site with this name already exists."})
    site.name = name
    with integrity_errors_as_validation(_CONSTRAINTS):
        site.save(update_fields=["name"])
    return site


@transaction.atomic
def delete_site(site: Site) -> None:
    current = Site.objects.for_account(site.account_id).filter(pk=site.pk).first()
    if current is None:
        raise NotFound("No such site.")
    if current.resources.exists():
        raise ValidationFailed({"__all__": "Move or delete the site's resources first."})
    gateway_ids = list(current.gateways.values_list("pk", flat=True))
    slots = list(current.gateways.values_list("address_id", flat=True))
    current.gateways.all().delete()
    TunnelAddress.objects.filter(pk__in=slots).delete()
    current.delete()
    publish(AccessChanged(account_id=site.account_id, reason="site_deleted"))
    del gateway_ids


def issue_gateway_token(site: Site, *, name: str = "") -> account_services.IssuedToken:
    return account_services.create_token(
        site.account, kind=Token.Kind.GATEWAY, name=name or f"{site.name} gateways", site_id=site.pk
    )
