"""Pull adapters: Google Workspace (Admin SDK Directory API), Okta, Microsoft Graph (Entra ID)."""

from __future__ import annotations

from accounts.directories.adapters.http import RetryPolicy
from accounts.directories.engine import Adapter, ProviderError
from accounts.models import Directory


def adapter_for(directory: Directory, *, retry: RetryPolicy | None = None) -> Adapter:
    from accounts.directories.adapters import entra, google, okta
    from accounts.signin import crypto

    config = {k: v for k, v in directory.config.items() if k != "secrets"}
    try:
        for name, ciphertext in (directory.config.get("secrets") or {}).items():
            config[name] = crypto.decrypt(str(ciphertext))
    except crypto.SecretUnavailable as exc:
        raise ProviderError(str(exc), status=400) from exc
    try:
        if directory.kind == Directory.Kind.GOOGLE:
            return google.GoogleAdapter(config, retry=retry)
        if directory.kind == Directory.Kind.OKTA:
            return okta.OktaAdapter(config, retry=retry)
        if directory.kind == Directory.Kind.ENTRA:
            return entra.EntraAdapter(config, retry=retry)
    except KeyError as exc:  # a setting the admin has not filled in: fix it, then enable again
        raise ProviderError(f"The directory's settings lack {exc.args[0]!r}", status=400) from exc
    raise ProviderError(f"{directory.get_kind_display()} directories are not pulled", status=400)
