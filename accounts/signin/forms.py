"""Sign-in forms. The password form enforces the brute-force limits before it checks anything."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.http import HttpRequest

from accounts.models import Account, AuthProvider
from accounts.signin import services, throttle
from accounts.signin.presets import PRESETS

WRONG_PASSWORD = "Wrong email or password."


class AccountSlugForm(forms.Form):
    account = forms.SlugField(
        label="Account", max_length=100, help_text="The short name of your organization's account."
    )


class PasswordForm(forms.Form):
    """Email + password; on the root page the email may be ``slug/email``."""

    username = forms.CharField(
        label="Email",
        max_length=400,
        widget=forms.TextInput(attrs={"autocomplete": "username"}),
    )
    password = forms.CharField(
        label="Password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "off"})
    )

    def __init__(self, request: HttpRequest, account: Account | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.request = request
        self.account = account
        self.user: User | None = None
        if account is None:
            self.fields[
                "username"
            ].help_text = "Or <code>account-slug/email</code> if you belong to several accounts."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        username = (data.get("username") or "").strip()
        password = data.get("password") or ""
        if not username or not password:
            return data
        if self.account is not None:
            slug, email = self.account.slug, username.rpartition("/")[2]
        else:
            slug, _, email = username.rpartition("/")
            slug = slug.lower() or services.slug_for_email(email)
        email = email.strip().lower()
        attempt = throttle.Attempt(
            account=slug, email=email, ip=throttle.client_ip(self.request.META)
        )
        if throttle.is_locked(attempt):
            raise forms.ValidationError(throttle.lockout_message(), code="locked")
        user = authenticate(
            self.request, username=f"{slug}/{email}" if slug else email, password=password
        )
        if user is None:
            if throttle.record_failure(attempt):
                raise forms.ValidationError(throttle.lockout_message(), code="locked")
            raise forms.ValidationError(WRONG_PASSWORD, code="invalid_login")
        throttle.record_success(attempt)
        self.user = user
        return data


class EmailCodeRequestForm(forms.Form):
    email = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )


class EmailCodeForm(forms.Form):
    code = forms.CharField(
        label="Code from the mail",
        max_length=20,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autocapitalize": "characters"}
        ),
    )


class ProviderForm(forms.Form):
    kind = forms.ChoiceField(choices=[(k, p.label) for k, p in PRESETS.items()])
    name = forms.CharField(max_length=255)
    value = forms.CharField(
        label="Issuer, tenant or domain",
        max_length=500,
        required=False,
        help_text="Google: leave empty. Okta: your Okta domain. Entra ID: the directory (tenant) "
        "id. Generic: the issuer URL.",
    )
    discovery_url = forms.CharField(
        label="Discovery document URL (optional)",
        max_length=1000,
        required=False,
        help_text="Only when it is not at <issuer>/.well-known/openid-configuration.",
    )
    client_id = forms.CharField(label="Client id", max_length=500)
    client_secret = forms.CharField(
        label="Client secret",
        max_length=2000,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="Stored encrypted; it is never shown again.",
    )
    context = forms.ChoiceField(
        choices=AuthProvider.Context.choices, initial=AuthProvider.Context.BOTH
    )
    email_verification = forms.ChoiceField(
        label="Email verification (generic only)",
        choices=[("claim", "email_verified claim must be true"), ("none", "Trust the address")],
        initial="claim",
    )
    use_userinfo = forms.BooleanField(label="Also read the userinfo endpoint", required=False)
    portal_session_hours = forms.IntegerField(
        label="Portal session lifetime (hours)", min_value=1, max_value=24, initial=8
    )
    client_session_days = forms.IntegerField(
        label="Client session lifetime (days)", min_value=1, max_value=90, initial=7
    )


class ClientSecretForm(forms.Form):
    client_secret = forms.CharField(
        label="New client secret",
        max_length=2000,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
    )


class DeviceCodeForm(forms.Form):
    code = forms.CharField(
        label="Code shown by your client",
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}),
    )
