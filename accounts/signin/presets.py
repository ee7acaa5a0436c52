"""Provider presets: the issuer each vendor uses and the claims it sends.

Google and Okta send ``email_verified`` and it is required; Entra ID does not send it (the
tenant owns the addresses), names people by ``oid`` across applications, and may put the address
in ``preferred_username`` (the UPN) when no ``email`` claim is configured.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Preset:
    kind: str
    label: str
    issuer_template: str  # {value} is what the admin enters (tenant id, Okta domain, issuer)
    value_label: str
    email_verification: str  # "claim": email_verified must be true; "none": trusted as is
    subject_claim: str = "sub"
    email_claims: tuple[str, ...] = ("email",)


PRESETS: dict[str, Preset] = {
    "google": Preset(
        kind="google",
        label="Google Workspace",
        issuer_template="https://accounts.google.com",
        value_label="",
        email_verification="claim",
    ),
    "okta": Preset(
        kind="okta",
        label="Okta",
        issuer_template="https://{value}",
        value_label="Okta domain (e.g. acme.okta.com)",
        email_verification="claim",
    ),
    "entra": Preset(
        kind="entra",
        label="Microsoft Entra ID",
        issuer_template="https://login.microsoftonline.com/{value}/v2.0",
        value_label="Directory (tenant) id",
        email_verification="none",
        subject_claim="oid",
        email_claims=("email", "preferred_username"),
    ),
    "oidc": Preset(
        kind="oidc",
        label="Generic OpenID Connect",
        issuer_template="{value}",
        value_label="Issuer URL (discovery at <issuer>/.well-known/openid-configuration)",
        email_verification="claim",
    ),
}


def issuer_for(kind: str, value: str) -> str:
    preset = PRESETS[kind]
    value = value.strip().rstrip("/") if kind != "oidc" else value.strip()
    if kind == "okta":
        value = value.removeprefix("https://").removeprefix("http://")
    return preset.issuer_template.format(value=value)
