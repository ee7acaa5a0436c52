"""Sign-in state kept in the database: email one-time codes."""

from __future__ import annotations

from django.db import models

from firezone_site.scoping import AccountManager, AccountScoped


class SignInCode(AccountScoped):
    """An emailed one-time code. Only a slow hash of the code is kept (Django's password hasher:
    the code is short, so a fast hash would be brute-forced offline from a database dump).

    Valid for 15 minutes; three wrong attempts burn it (``used_at`` set)."""

    actor = models.ForeignKey("accounts.Actor", on_delete=models.CASCADE, related_name="+")
    provider = models.ForeignKey(
        "accounts.AuthProvider", on_delete=models.CASCADE, related_name="+"
    )
    code_hash = models.CharField(max_length=256)
    attempts = models.PositiveSmallIntegerField(default=0)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    objects = AccountManager["SignInCode"]()

    class Meta:
        app_label = "accounts"
        indexes = [models.Index(fields=["account", "actor"])]

    def __str__(self) -> str:
        return f"sign-in code {self.pk}"
