"""Web UI forms for sign-in, groups, actors and account settings.

Forms parse and shape input; the services validate invariants and their ``ValidationFailed``
errors land back on these forms (``accounts.ui.apply_errors``), so field names here match the
services' error keys.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from accounts.models import Actor


class SignInForm(AuthenticationForm):
    username = forms.CharField(
        label="Email",
        max_length=400,
        help_text="Or <code>account-slug/email</code> if you belong to several accounts.",
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Wrong email or password.",
    }


class GroupForm(forms.Form):
    name = forms.CharField(max_length=255)


class AddMemberForm(forms.Form):
    email = forms.CharField(
        label="Add a member by email",
        max_length=254,
        widget=forms.TextInput(attrs={"placeholder": "name@example.com", "list": "actor-emails"}),
    )


class SetMembersForm(forms.Form):
    emails = forms.CharField(
        label="Members (one email per line)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Replaces the whole member list.",
    )

    def cleaned_emails(self) -> list[str]:
        raw: str = self.cleaned_data.get("emails") or ""
        seen: dict[str, None] = {}
        for part in raw.replace(",", "\n").splitlines():
            email = part.strip().lower()
            if email:
                seen[email] = None
        return list(seen)


_UI_TYPES = [
    (Actor.Type.USER.value, "User"),
    (Actor.Type.ADMIN.value, "Admin"),
    (Actor.Type.SERVICE_ACCOUNT.value, "Service account"),
]


class ActorForm(forms.Form):
    name = forms.CharField(max_length=255)
    email = forms.CharField(
        max_length=254, required=False, help_text="Required for users and admins."
    )
    type = forms.ChoiceField(choices=_UI_TYPES, initial=Actor.Type.USER.value)
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Optional: lets the actor sign in here with email + password (12+ characters).",
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["password"].label = "New password"
            self.fields["password"].help_text = "Leave empty to keep the current one."
            # api clients keep their type (they are created through the API).
            if self.initial.get("type") == Actor.Type.API_CLIENT:
                cast(forms.ChoiceField, self.fields["type"]).choices = [
                    *_UI_TYPES,
                    (Actor.Type.API_CLIENT.value, "API client"),
                ]


class AccountForm(forms.Form):
    name = forms.CharField(label="Account name", max_length=255)


class ApiTokenForm(forms.Form):
    actor = forms.ChoiceField(
        label="API client or service account",
        required=False,
        help_text="Only an API client's token may manage the account through the API.",
    )
    new_service_account = forms.CharField(
        label="…or a new API client named", max_length=255, required=False
    )
    name = forms.CharField(label="Token name", max_length=255, required=False)
    expires_in_days = forms.IntegerField(
        label="Expires after (days)",
        min_value=1,
        max_value=3650,
        required=False,
        help_text="Empty: never expires.",
    )

    def __init__(self, *args: Any, service_accounts: list[Actor], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["actor"]).choices = [("", "—")] + [
            (str(a.pk), a.name) for a in service_accounts
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("actor") and not (data.get("new_service_account") or "").strip():
            self.add_error("actor", "Choose a service account or name a new one.")
        if data.get("actor") and (data.get("new_service_account") or "").strip():
            self.add_error("new_service_account", "Either choose one or name a new one, not both.")
        return data
