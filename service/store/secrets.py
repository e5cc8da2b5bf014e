"""Webhook signing secrets at rest: encrypted with Fernet under a key derived from the
server's ``TAPELINE_SECRET_KEY``, readable under ``TAPELINE_SECRET_KEY_PREVIOUS`` too, so the
server key can be rotated (:meth:`SecretBox.rotate` re-encrypts under the current one).

Without a server key (a server on loopback only: the API refuses to make webhooks without one
elsewhere) a secret is kept as it is, marked ``plain:``; it is encrypted once a key is set.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PLAIN = "plain:"
PREFIX = "whsec_"
SECRET_BYTES = 24
# Keeps the webhook key apart from what else the server key protects (API keys' HMAC).
PURPOSE = b"tapeline webhook signing secrets"


class SecretUnreadable(RuntimeError):
    """A stored secret cannot be decrypted with the server's keys (they changed)."""


def new_secret() -> str:
    """A new signing secret as Standard Webhooks writes one: ``whsec_`` and base64 bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _fernet(server_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=PURPOSE).derive(server_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Encrypts secrets under the first of the server keys, decrypts under any of them."""

    def __init__(self, server_keys: Sequence[str | None]) -> None:
        keys = [key for key in server_keys if key]
        self._fernet = MultiFernet([_fernet(key) for key in keys]) if keys else None

    @property
    def encrypts(self) -> bool:
        """Whether a server key is set (secrets are then stored encrypted)."""
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        """The form a secret is stored in."""
        if self._fernet is None:
            return PLAIN + secret
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret a stored form holds; :class:`SecretUnreadable` if no key opens it."""
        if stored.startswith(PLAIN):
            return stored[len(PLAIN):]
        if self._fernet is None:
            raise SecretUnreadable("the signing secret is encrypted and TAPELINE_SECRET_KEY "
                                   "is not set")
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("the signing secret cannot be decrypted with "
                                   "TAPELINE_SECRET_KEY (or TAPELINE_SECRET_KEY_PREVIOUS): was "
                                   "the key changed? Rotate the webhook's secret") from None

    def rotate(self, stored: str) -> str:
        """A stored form re-encrypted under the current server key (the same when it is
        already, or when there is no key)."""
        if self._fernet is None:
            return stored
        if stored.startswith(PLAIN):
            return self.seal(stored[len(PLAIN):])
        try:
            return self._fernet.rotate(stored.encode()).decode()
        except InvalidToken:
            return stored  # unreadable: left for its owner to rotate
