"""Account isolation: the one mechanism every read goes through.

Every tenant model inherits :class:`AccountScoped`; its default manager returns an
:class:`AccountQuerySet` whose ``for_account(account)`` is how reads are scoped. Code outside the
models/queries/services modules never touches ``Model.objects`` directly (a test enforces it), so a
query that forgets the account cannot be written by accident.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, TypeVar

from django.db import models

if TYPE_CHECKING:
    from accounts.models import Account

_M = TypeVar("_M", bound=models.Model)


class AccountQuerySet(models.QuerySet[_M]):
    def for_account(self, account: Account | uuid.UUID) -> AccountQuerySet[_M]:
        account_id = account if isinstance(account, uuid.UUID) else account.pk
        if account_id is None:
            raise ValueError("for_account() needs a saved account")
        return self.filter(account_id=account_id)


class AccountManager(models.Manager[_M]):
    def get_queryset(self) -> AccountQuerySet[_M]:
        return AccountQuerySet(self.model, using=self._db)

    def for_account(self, account: Account | uuid.UUID) -> AccountQuerySet[_M]:
        return self.get_queryset().for_account(account)


class AccountScoped(models.Model):
    """Abstract base: a UUID primary key, the owning account, and a creation time."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
