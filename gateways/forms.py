"""Web UI forms for sites and static devices."""

from __future__ import annotations

from typing import Any

from django import forms


class SiteForm(forms.Form):
    name = forms.CharField(max_length=255)


class GatewayEndpointForm(forms.Form):
    endpoint = forms.CharField(
        label="Public endpoint",
        max_length=100,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "e.g. vpn.example.com:51820"}),
        help_text="Where devices reach this gateway's WireGuard port from outside (host:port). "
        "Wins over the agent's --endpoint and the portal's guess; leave empty to use those.",
    )


class DeviceForm(forms.Form):
    actor = forms.CharField(
        label="User email",
        max_length=254,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text="The user or admin the device belongs to.",
    )
    name = forms.CharField(
        max_length=255, widget=forms.TextInput(attrs={"placeholder": "e.g. Laptop"})
    )
    public_key = forms.CharField(
        label="WireGuard public key",
        max_length=64,
        required=False,
        help_text="Leave empty and the portal generates a key pair; the private key is shown "
        "once, in the config, and never stored.",
    )

    def __init__(self, *args: Any, choose_actor: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not choose_actor:
            del self.fields["actor"]


class AuthorizationFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search")
    actor = forms.CharField(required=False, label="Actor email")
    resource = forms.CharField(required=False, label="Resource")
    since = forms.DateTimeField(
        required=False,
        label="From (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    until = forms.DateTimeField(
        required=False,
        label="Until (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    status = forms.ChoiceField(
        required=False,
        choices=[("", "any"), ("active", "active"), ("revoked", "revoked"), ("expired", "expired")],
    )
