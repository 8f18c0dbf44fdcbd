"""Carrier credentials at rest: Fernet (AES-128-CBC + HMAC) under FIELD_ENCRYPTION_KEY.

FIELD_ENCRYPTION_KEY may hold several comma-separated keys: the first encrypts, all decrypt,
so a key can be rotated by prepending a new one and re-encrypting (docs/operations.md).
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(RuntimeError):
    """A stored secret can't be decrypted with any configured key."""


@cache
def _fernet(keys: str) -> MultiFernet:
    return MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])


def encrypt(value: str) -> bytes:
    return _fernet(settings.FIELD_ENCRYPTION_KEY).encrypt(value.encode())


def decrypt(token: bytes | memoryview) -> str:
    try:
        return _fernet(settings.FIELD_ENCRYPTION_KEY).decrypt(bytes(token)).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "A stored carrier credential can't be decrypted: FIELD_ENCRYPTION_KEY changed "
            "without keeping the old key"
        ) from None


def rotate(token: bytes | memoryview) -> bytes:
    """The same secret under the first (newest) key."""
    return _fernet(settings.FIELD_ENCRYPTION_KEY).rotate(bytes(token))
