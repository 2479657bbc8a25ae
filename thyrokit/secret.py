"""The de-identification secret and the keyed pseudonyms derived from it.

The secret never has a default: it comes from the environment variable
``THYROKIT_SECRET`` or from a key file named by ``THYROKIT_SECRET_FILE``. Every
pseudonym (patient, study, series, image) is an HMAC-SHA256 of the original value
under that secret, so the same input and secret always give the same pseudonym,
and nobody without the secret can link a pseudonym back to a patient.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

SECRET_ENV = "THYROKIT_SECRET"
SECRET_FILE_ENV = "THYROKIT_SECRET_FILE"
MIN_SECRET_BYTES = 16

HOW_TO_SET = (
    f"set {SECRET_ENV} to a long random string, or {SECRET_FILE_ENV} to a key file kept "
    f"outside the repository, e.g.\n"
    f"  python -c 'import secrets; print(secrets.token_hex(32))' > ~/.config/thyrokit/site.key\n"
    f"  export {SECRET_FILE_ENV}=~/.config/thyrokit/site.key"
)


class SecretError(RuntimeError):
    """Raised when no usable de-identification secret is configured."""


def load_secret(key_file: str | os.PathLike | None = None) -> bytes:
    """Return the secret from `key_file`, ``THYROKIT_SECRET`` or ``THYROKIT_SECRET_FILE``."""
    value: bytes | None = None
    source = ""
    if key_file is not None:
        value, source = _read_key_file(Path(key_file)), f"key file {key_file}"
    elif os.environ.get(SECRET_ENV):
        value, source = os.environ[SECRET_ENV].encode("utf-8"), SECRET_ENV
    elif os.environ.get(SECRET_FILE_ENV):
        path = Path(os.path.expanduser(os.environ[SECRET_FILE_ENV]))
        value, source = _read_key_file(path), f"{SECRET_FILE_ENV} ({path})"
    if value is None:
        raise SecretError(f"no de-identification secret is set: {HOW_TO_SET}")
    if len(value) < MIN_SECRET_BYTES:
        raise SecretError(
            f"the secret from {source} is shorter than {MIN_SECRET_BYTES} bytes: {HOW_TO_SET}"
        )
    return value


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except OSError as error:
        raise SecretError(f"cannot read key file {path}: {error.strerror}") from None


def keyed_digest(secret: bytes, namespace: str, value: str | bytes) -> str:
    """Return the hex HMAC-SHA256 of `value` under `secret`, separated by `namespace`."""
    payload = value if isinstance(value, bytes) else value.encode("utf-8")
    mac = hmac.new(secret, namespace.encode("utf-8") + b"\x00" + payload, hashlib.sha256)
    return mac.hexdigest()


def pseudonym(secret: bytes, namespace: str, value: str | bytes, length: int = 16) -> str:
    """Return a short keyed pseudonym such as ``pat-3f2a9c01d4e5b6a7``."""
    return f"{namespace}-{keyed_digest(secret, namespace, value)[:length]}"


def secret_fingerprint(secret: bytes) -> str:
    """Return a non-reversible id of the secret, safe to print and to store in outputs."""
    return keyed_digest(secret, "fingerprint", b"thyrokit")[:12]
