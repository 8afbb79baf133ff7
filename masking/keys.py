"""The masking master key and the per-consumer keys derived from it (DESIGN §6).

The master key is handed in by the caller (``MasterKey.from_env(os.environ)`` at the edge of
the program), never read from the environment deep inside: there is no default key, and a
missing or malformed key is a one-line :class:`MaskingKeyError` that never echoes key
material. Tokens use a key derived per consumer department with HKDF-SHA256, so two
departments cannot pool their extracts to link people.

The key id is public: the first 8 hex digits of SHA-256 over a fixed label and the key. A
256-bit random key cannot be recovered from a 32-bit digest of it (nor from the full
digest: SHA-256 is preimage resistant), so the id may go into Parquet metadata and logs.
Key objects refuse to be pickled, so they cannot travel through XCom by accident.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

from catalog.errors import MaskingKeyError

ENV_KEY = "YIMEN_MASKING_KEY"
ENV_KEY_FILE = "YIMEN_MASKING_KEY_FILE"
MIN_KEY_BYTES = 32
HOW_TO_PROVIDE = (
    f"set {ENV_KEY} (hex or base64 of at least {MIN_KEY_BYTES} random bytes) or "
    f"{ENV_KEY_FILE} (a file holding one; `lake demo` creates var/masking.key)"
)
_KEY_ID_LABEL = b"yimen-lake key id v1|"
_INFO = {"token": b"yimen-lake token v1|", "fake": b"yimen-lake fake v1|"}
_CONSUMER = re.compile(r"^[a-z][a-z0-9_]*$")

Purpose = Literal["token", "fake"]


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32, salt: bytes = b"") -> bytes:
    """HKDF-SHA256 (RFC 5869): extract then expand. An empty salt means 32 zero bytes."""
    prk = hmac.digest(salt or bytes(32), ikm, "sha256")
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out += block
    return out[:length]


def _key_id(secret: bytes) -> str:
    return hashlib.sha256(_KEY_ID_LABEL + secret).hexdigest()[:8]


def _no_pickle(self: object, *protocol: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} holds key material and is not serialisable")


class MasterKey:
    """The master key: only its key id is ever shown."""

    __slots__ = ("_secret", "key_id")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise MaskingKeyError(
                f"masking key is {len(secret)} bytes, need at least {MIN_KEY_BYTES}"
            )
        self._secret = bytes(secret)
        self.key_id = _key_id(self._secret)

    @classmethod
    def from_text(cls, text: str, source: str = ENV_KEY) -> MasterKey:
        """Decode hex or base64 text; ``source`` names where it came from in errors."""
        text = text.strip()
        secret: bytes | None = None
        if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text) and len(text) >= 2 * MIN_KEY_BYTES:
            secret = bytes.fromhex(text)
        else:
            try:
                padded = text + "=" * (-len(text) % 4)
                secret = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
            except (binascii.Error, ValueError):
                secret = None
        if not secret:
            raise MaskingKeyError(
                f"{source} is not hex or base64 (the value is not shown); {HOW_TO_PROVIDE}"
            )
        if len(secret) < MIN_KEY_BYTES:
            raise MaskingKeyError(
                f"{source} decodes to {len(secret)} bytes, need at least {MIN_KEY_BYTES}; "
                f"generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return cls(secret)

    @classmethod
    def from_file(cls, path: Path | str) -> MasterKey:
        """Read a key file (hex or base64 text, as :func:`create_key_file` writes)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise MaskingKeyError(f"masking key file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise MaskingKeyError(
                f"masking key file {path} cannot be read ({type(exc).__name__})"
            ) from None
        return cls.from_text(text, source=f"masking key file {path}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> MasterKey:
        """The key from ``YIMEN_MASKING_KEY`` or ``YIMEN_MASKING_KEY_FILE``; no default."""
        text, path = environ.get(ENV_KEY, "").strip(), environ.get(ENV_KEY_FILE, "").strip()
        if text and path:
            raise MaskingKeyError(f"both {ENV_KEY} and {ENV_KEY_FILE} are set; set only one")
        if text:
            return cls.from_text(text, source=ENV_KEY)
        if path:
            return cls.from_file(path)
        raise MaskingKeyError(f"no masking key: {HOW_TO_PROVIDE}")

    def derive(self, consumer: str, purpose: Purpose = "token") -> DerivedKey:
        """The consumer department's own key: HKDF-SHA256, info = label + department code."""
        if not _CONSUMER.fullmatch(consumer):
            raise MaskingKeyError(f"consumer department code {consumer!r} is not a valid code")
        secret = hkdf_sha256(self._secret, _INFO[purpose] + consumer.encode("ascii"))
        return DerivedKey(consumer=consumer, purpose=purpose, key_id=self.key_id, secret=secret)

    def token_key(self, consumer: str) -> DerivedKey:
        return self.derive(consumer, "token")

    def fake_key(self, consumer: str) -> DerivedKey:
        return self.derive(consumer, "fake")

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"

    __str__ = __repr__
    __reduce__ = _no_pickle  # type: ignore[assignment]
    __reduce_ex__ = _no_pickle  # type: ignore[assignment]


@dataclass(frozen=True, repr=False, eq=False)
class DerivedKey:
    """A consumer's derived key. ``key_id`` is the master key's id, recorded with tokens."""

    consumer: str
    purpose: Purpose
    key_id: str
    secret: bytes = field(repr=False)

    def hmac_sha256(self, messages: list[bytes]) -> list[bytes]:
        """HMAC-SHA256 of each message (RFC 2104 with precomputed pad states: 2x faster)."""
        block = self.secret.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in block)).copy
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in block)).copy

        def one(message: bytes) -> bytes:
            h = inner()
            h.update(message)
            o = outer()
            o.update(h.digest())
            return o.digest()

        return list(map(one, messages))

    def __repr__(self) -> str:
        return (
            f"DerivedKey(consumer={self.consumer!r}, purpose={self.purpose!r}, "
            f"key_id={self.key_id!r})"
        )

    __str__ = __repr__
    __reduce__ = _no_pickle  # type: ignore[assignment]
    __reduce_ex__ = _no_pickle  # type: ignore[assignment]


def create_key_file(path: Path | str) -> MasterKey:
    """Write a new random 32-byte key as hex, owner-only (0600); never overwrite a key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(MIN_KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise MaskingKeyError(
            f"masking key file {path} already exists; not overwritten (to rotate, see "
            f"docs/masking.md)"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(secret.hex() + "\n")
    return MasterKey(secret)


def key_by_id(directory: Path | str, key_id: str) -> MasterKey:
    """The archived master key with ``key_id`` among ``directory/*.key`` (after a rotation)."""
    for path in sorted(Path(directory).glob("*.key")):
        key = MasterKey.from_file(path)
        if key.key_id == key_id:
            return key
    raise MaskingKeyError(f"no masking key with id {key_id} in {directory}")
