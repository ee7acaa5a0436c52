"""Sign-in state kept in the database: email one-time codes, headless-client sign-ins."""

from __future__ import annotations

import uuid

from django.db import models

from accounts.scoping import AccountManager, AccountScoped


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


class DeviceAuthorization(models.Model):
    """A headless client's pending sign-in (like RFC 8628's device authorization grant).

    Not tied to an account until a signed-in person confirms its user code; the client then
    redeems its device code once for a client session token. Only hashes of both codes are
    kept: the device code is 256 random bits (SHA-256 is enough), the user code is short and
    lives ten minutes behind a signed-in, rate-limited confirmation page."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device_code_hash = models.CharField(max_length=64, unique=True)
    user_code_hash = models.CharField(max_length=64, unique=True)
    account = models.ForeignKey(
        "accounts.Account", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    actor = models.ForeignKey(
        "accounts.Actor", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    provider = models.ForeignKey(
        "accounts.AuthProvider",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    client_name = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    denied_at = models.DateTimeField(null=True, blank=True)
    redeemed_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "accounts"

    def __str__(self) -> str:
        return f"device sign-in {self.pk}"
