"""Directory forms: one per kind; secrets are write-only (left empty, the stored one stays)."""

from __future__ import annotations

from typing import Any

from django import forms

from accounts.models import Directory

SECRET_HELP = "Stored encrypted and never shown again; leave empty to keep the current one."


class DirectoryForm(forms.Form):
    name = forms.CharField(max_length=255)
    sync_interval_minutes = forms.IntegerField(
        label="Sync every (minutes)", min_value=5, max_value=7 * 24 * 60, initial=120
    )
    # field name -> (label, required, secret, help)
    FIELDS: dict[str, tuple[str, bool, bool, str]] = {}

    def __init__(self, *args: Any, creating: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, (label, required, secret, help_text) in self.FIELDS.items():
            if name == "private_key":
                widget: forms.Widget = forms.Textarea(attrs={"rows": 4, "autocomplete": "off"})
            elif secret:
                widget = forms.PasswordInput(attrs={"autocomplete": "off"})
            else:
                widget = forms.TextInput()
            self.fields[name] = forms.CharField(
                label=label,
                required=required and (creating or not secret),
                widget=widget,
                help_text=SECRET_HELP if secret else help_text,
                strip=name != "private_key",
            )

    def config(self) -> dict[str, object]:
        return {k: self.cleaned_data[k] for k in self.FIELDS if self.cleaned_data.get(k)}


class GoogleForm(DirectoryForm):
    FIELDS = {
        "admin_email": ("Admin to impersonate", True, False, "A Workspace admin's email."),
        "service_account_email": ("Service account email", True, False, ""),
        "private_key": ("Service account private key (PEM)", True, True, ""),
        "customer": ("Customer id", False, False, "Leave empty for my_customer."),
    }
    org_unit_groups = forms.BooleanField(
        label="Also sync organisational units as groups", required=False
    )

    def config(self) -> dict[str, object]:
        return {**super().config(), "org_unit_groups": self.cleaned_data["org_unit_groups"]}


class OktaForm(DirectoryForm):
    FIELDS = {
        "org_url": ("Okta org URL", True, False, "e.g. https://acme.okta.com"),
        "client_id": ("Service app client id", True, False, ""),
        "private_key": ("Service app private key (PEM)", True, True, ""),
        "key_id": ("Key id (kid)", False, False, ""),
    }


class EntraForm(DirectoryForm):
    FIELDS = {
        "tenant_id": ("Directory (tenant) id", True, False, ""),
        "client_id": ("Application (client) id", True, False, ""),
        "client_secret": ("Client secret", True, True, ""),
    }


class ScimForm(DirectoryForm):
    sync_interval_minutes = None  # type: ignore[assignment]  # pushed to, not pulled


FORMS: dict[str, type[DirectoryForm]] = {
    Directory.Kind.GOOGLE: GoogleForm,
    Directory.Kind.OKTA: OktaForm,
    Directory.Kind.ENTRA: EntraForm,
    Directory.Kind.SCIM: ScimForm,
}
