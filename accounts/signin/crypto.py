"""Encryption at rest for provider secrets (OIDC client secrets).

The key is derived from SECRET_KEY with HKDF-SHA256 under its own label, so it is never the
secret key itself and other uses of SECRET_KEY cannot produce it. Fernet gives authenticated
encryption (AES-128-CBC + HMAC-SHA256); a changed SECRET_KEY makes old secrets undecryptable,
which surfaces as :class:`SecretUnavailable` (re-enter the secret).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretUnavailable(Exception):
    """The stored secret cannot be decrypted (SECRET_KEY changed): enter it again."""


def _fernet() -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"firezone provider secrets v1"
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretUnavailable("The stored secret cannot be decrypted: enter it again.") from exc
