"""Local password sign-in by account slug + email (web UI and Django admin).

Django users are named ``<account id>:<email>`` so the same email can exist in two accounts; people
sign in with ``<slug>/<email>``, or just the email when it belongs to a single account.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.http import HttpRequest

from accounts.models import Actor


class AccountEmailBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if not username or not password:
            return None
        slug, _, email = username.strip().rpartition("/")
        # Sign-in is before any account is known: the lookup is by (slug, email), which names
        # exactly one account's actor, so this query is scoped by construction.
        actors = Actor.objects.filter(
            email=email.lower(),
            user__isnull=False,
            disabled_at__isnull=True,
            account__disabled_at__isnull=True,
        ).select_related("user")
        if slug:
            actors = actors.filter(account__slug=slug.lower())
        found = list(actors[:2])
        if len(found) != 1 or found[0].user is None:
            # Same hashing cost either way, so timing does not reveal which emails exist.
            from django.contrib.auth.hashers import make_password

            make_password(password)
            return None
        user = found[0].user
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
