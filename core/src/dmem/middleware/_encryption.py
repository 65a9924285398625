"""``Encryption``: AES-256-GCM on every stored value, with key ids for rotation.

Stored format (the *envelope*, version 1)::

    b"\\x00E" | version (1 byte: 0x01) | n (1 byte) | key id (n ASCII bytes)
            | nonce (12 random bytes) | ciphertext | GCM tag (16 bytes)

The associated data authenticated with every value is the envelope's header (magic,
version, key id), the provider's namespace (length-prefixed) and the record's key, so a
ciphertext copied under another key or into another namespace fails authentication, as does
any flipped, dropped or added byte: each is :class:`CorruptValueError`. Keys, tags, sizes
and expiry stay in clear (docs/encryption.md, "What is protected").

Nonces are random (``os.urandom``): NIST SP 800-38D allows 2**32 encryptions under one key
that way, which is why rotation (``primary``) exists.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._counter import add_to_counter, encode_counter, parse_counter
from .._pattern import Pattern
from ..errors import CorruptValueError, InvalidArgumentError, KeyNotFoundError
from ..provider import Entry, KVProvider, refuse_large_values
from ._base import Wrapper
from ._compression import CompressionProvider

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENVELOPE_MAGIC",
    "ENVELOPE_VERSION",
    "Encryption",
    "EncryptionProvider",
    "envelope_key_id",
]

ENVELOPE_MAGIC = b"\x00E"
ENVELOPE_VERSION = 1
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits: GCM's native nonce size
TAG_BYTES = 16
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LENGTH = struct.Struct(">I")
_HEADER_FIXED = len(ENVELOPE_MAGIC) + 2  # magic, version, key id length


def _aesgcm_class() -> type[AESGCM]:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise InvalidArgumentError(
            "Encryption needs the cryptography package: pip install 'dmem[encryption]' "
            "(or pip install cryptography)"
        ) from exc
    return AESGCM


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


def _decode_key_text(text: str, where: str) -> bytes:
    """32 key bytes from base64 (standard or URL-safe, padding optional) or 64 hex digits.

    The message never quotes ``text``: it may be a key of the wrong length.
    """
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 2 * KEY_BYTES and all(c in "0123456789abcdefABCDEF" for c in text):
        raw = bytes.fromhex(text)
    else:
        padded = text + "=" * (-len(text) % 4)
        try:
            raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != KEY_BYTES:
        raise InvalidArgumentError(
            f"{where} does not hold a {KEY_BYTES}-byte key as base64 or 64 hex digits "
            "(make one with dmem.Encryption.generate_key())"
        )
    return raw


class Encryption:
    """Middleware spec: ``Encryption(keys={"2026-01": key}, primary="2026-01")``.

    ``keys`` maps key ids to keys: 32 ``bytes``, or ``"env:NAME"`` (an environment
    variable holding the key as base64 or hex) or ``"file:PATH"`` (a file holding 32 raw
    bytes, or the key as base64 or hex). Every key decrypts; ``primary`` (which may be left
    out when there is one key) encrypts. Keys are read and checked here, before any I/O,
    and never shown: not in a repr, a log line, a health report or an error message.
    """

    name = "encryption"

    def __init__(
        self,
        *,
        keys: Mapping[str, bytes | str] | None = None,
        primary: str | None = None,
    ) -> None:
        if keys is None:
            raise InvalidArgumentError(
                "Encryption needs keys={key_id: key}; a key is 32 bytes, 'env:NAME' or "
                "'file:PATH' (docs/encryption.md)"
            )
        if not isinstance(keys, Mapping) or not keys:
            raise InvalidArgumentError(
                "Encryption keys must be a non-empty mapping of key id to key, "
                f"not {type(keys).__name__}"
            )
        aesgcm = _aesgcm_class()
        ciphers: dict[str, AESGCM] = {}
        for key_id, material in keys.items():
            if type(key_id) is not str or not _KEY_ID.fullmatch(key_id):
                # Not quoted: keys and ids swapped by mistake would put a key here.
                raise InvalidArgumentError(
                    "Encryption key ids must be 1 to 64 of A-Z a-z 0-9 . _ - "
                    f"(got a str of {len(key_id)} characters)"
                    if type(key_id) is str
                    else f"Encryption key ids must be str, not {type(key_id).__name__}"
                )
            ciphers[key_id] = aesgcm(self._resolve(key_id, material))
        if primary is None:
            if len(ciphers) != 1:
                raise InvalidArgumentError(
                    f"Encryption has {len(ciphers)} keys: say which one encrypts (primary=...)"
                )
            primary = next(iter(ciphers))
        if type(primary) is not str or primary not in ciphers:
            raise InvalidArgumentError(  # not quoted either, for the same reason
                f"Encryption primary is not one of its key ids {sorted(ciphers)}"
            )
        self.key_ids: tuple[str, ...] = tuple(ciphers)
        self.primary = primary
        self._by_header = {_header(key_id): cipher for key_id, cipher in ciphers.items()}
        self._header = _header(primary)
        self._primary_cipher = ciphers[primary]
        self._namespaces: dict[str, bytes] = {}
        self.overhead = len(self._header) + NONCE_BYTES + TAG_BYTES
        self._invalid_tag = _invalid_tag()

    # --- keys ------------------------------------------------------------------------------
    @staticmethod
    def generate_key() -> str:
        """A new random key as base64 text (for an environment variable or a file)."""
        return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")

    @staticmethod
    def key_from_env(name: str) -> bytes:
        """The key in environment variable ``name`` (base64 or hex); checked, never shown."""
        if type(name) is not str or not name:
            raise InvalidArgumentError("key_from_env needs an environment variable name")
        text = os.environ.get(name)
        if text is None:
            raise InvalidArgumentError(f"environment variable {name!r} is not set")
        return _decode_key_text(text, f"environment variable {name!r}")

    @staticmethod
    def key_from_file(path: str | os.PathLike[str]) -> bytes:
        """The key in file ``path``: 32 raw bytes, or base64 / hex text; never shown."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot read key file {os.fspath(path)!r}: {exc.strerror or type(exc).__name__}"
            ) from None
        if len(data) == KEY_BYTES:
            return data
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        return _decode_key_text(text, f"key file {os.fspath(path)!r}")

    @classmethod
    def _resolve(cls, key_id: str, material: object) -> bytes:
        if isinstance(material, (bytes, bytearray, memoryview)):
            raw = bytes(material)
            if len(raw) != KEY_BYTES:
                raise InvalidArgumentError(
                    f"Encryption key {key_id!r} is {len(raw)} bytes; AES-256 needs {KEY_BYTES}"
                )
            return raw
        if type(material) is str:
            if material.startswith("env:"):
                return cls.key_from_env(material[4:])
            if material.startswith("file:"):
                return cls.key_from_file(material[5:])
            # Not quoted: a str here may well be the key itself, pasted in.
            raise InvalidArgumentError(
                f"Encryption key {key_id!r} is a str that is neither 'env:NAME' nor "
                "'file:PATH'; give the key as 32 bytes, or read it with "
                "Encryption.key_from_env / key_from_file"
            )
        raise InvalidArgumentError(
            f"Encryption key {key_id!r} must be bytes or an 'env:'/'file:' str, "
            f"not {type(material).__name__}"
        )

    # --- the envelope ----------------------------------------------------------------------
    # The hot path looks envelopes up by their whole header (magic, version, key id) in a
    # dict of the known ones, and keeps each namespace's part of the associated data, so a
    # call does no parsing and no encoding beyond the record's key: the cipher is the cost.
    def _namespace_part(self, namespace: str) -> bytes:
        part = self._namespaces.get(namespace)
        if part is None:
            ns = namespace.encode("utf-8")
            part = _LENGTH.pack(len(ns)) + ns
            if len(self._namespaces) < 1024:  # bounded: namespaces are few, but not known
                self._namespaces[namespace] = part
        return part

    def seal(self, namespace: str, key: str, plaintext: bytes) -> bytes:
        """The envelope of ``plaintext`` stored at ``key`` of ``namespace`` (primary key)."""
        header = self._header
        nonce = os.urandom(NONCE_BYTES)
        aad = header + self._namespace_part(namespace) + key.encode("utf-8")
        return header + nonce + self._primary_cipher.encrypt(nonce, plaintext, aad)

    def open(self, namespace: str, key: str, envelope: bytes) -> bytes:
        """The plaintext of ``envelope`` read at ``key`` of ``namespace``, or
        :class:`CorruptValueError` (not an envelope, unknown key id, failed authentication)."""
        size = _HEADER_FIXED + (envelope[3] if len(envelope) > 3 else 0)
        header = envelope[:size]
        cipher = self._by_header.get(header)
        if cipher is None:
            key_id = envelope_key_id(envelope)  # says what is wrong with it
            raise CorruptValueError(
                f"value was encrypted with key id {key_id!r}, which is not among this "
                f"Encryption's key ids {list(self.key_ids)}: add that key to keys="
            )
        if len(envelope) < size + NONCE_BYTES + TAG_BYTES:
            raise CorruptValueError(
                f"encrypted value (key id {header[_HEADER_FIXED:].decode()!r}) is truncated"
            )
        view = memoryview(envelope)  # no copy of the ciphertext
        aad = header + self._namespace_part(namespace) + key.encode("utf-8")
        try:
            return cipher.decrypt(view[size : size + NONCE_BYTES], view[size + NONCE_BYTES :], aad)
        except self._invalid_tag:
            raise CorruptValueError(
                f"encrypted value (key id {header[_HEADER_FIXED:].decode()!r}) fails "
                "authentication: it was changed, truncated, or copied from another key or "
                "namespace"
            ) from None

    def wrap(self, inner: KVProvider) -> EncryptionProvider:
        below: object = inner
        while below is not None:
            if isinstance(below, CompressionProvider):
                raise InvalidArgumentError(
                    "Compression is inside Encryption in this middleware chain, so values "
                    "would be encrypted before being compressed, and ciphertext does not "
                    "compress; a chain is outermost first: put Compression before Encryption, "
                    "e.g. [Cache(), Compression(), Encryption(...)]"
                )
            below = getattr(below, "inner", None)
        return EncryptionProvider(inner, self)

    def __repr__(self) -> str:
        return f"Encryption(key_ids={list(self.key_ids)!r}, primary={self.primary!r})"


def _header(key_id: str) -> bytes:
    return ENVELOPE_MAGIC + bytes((ENVELOPE_VERSION, len(key_id))) + key_id.encode("ascii")


def envelope_key_id(stored: bytes) -> str:
    """The key id of an envelope, or :class:`CorruptValueError` when ``stored`` is none."""
    if stored[:2] != ENVELOPE_MAGIC:
        raise CorruptValueError(
            "value is not encrypted (no envelope): it was written without Encryption, or "
            "by something other than dmem"
        )
    if len(stored) < _HEADER_FIXED:
        raise CorruptValueError("encrypted value is truncated")
    if stored[2] != ENVELOPE_VERSION:
        raise CorruptValueError(f"encrypted value has unknown envelope version {stored[2]}")
    size = stored[3]
    raw_id = stored[_HEADER_FIXED : _HEADER_FIXED + size]
    key_id = raw_id.decode("ascii", "backslashreplace")
    if len(raw_id) != size or size == 0 or not _KEY_ID.fullmatch(key_id):
        raise CorruptValueError("encrypted value has a truncated or malformed key id")
    return key_id


class EncryptionProvider(Wrapper):
    """The provider an :class:`Encryption` spec wraps around ``inner``."""

    def __init__(self, inner: KVProvider, spec: Encryption) -> None:
        super().__init__(inner)
        self.spec = spec
        self._seal = spec.seal
        self._open = spec.open

    def pack(self, key: str, value: bytes) -> bytes:
        return self._seal(self.inner.namespace, key, value)

    def unpack(self, key: str, stored: bytes) -> bytes:
        return self._open(self.inner.namespace, key, stored)

    @property
    def max_value_bytes(self) -> int | None:
        """The inner provider's limit less the envelope's overhead (None: no limit)."""
        limit = getattr(self.inner, "max_value_bytes", None)
        return None if limit is None else int(limit) - self.spec.overhead

    def _refuse_large(self, values: Sequence[bytes]) -> None:
        limit = self.max_value_bytes
        if limit is not None:
            refuse_large_values(values, limit)

    # --- provider calls that carry values ----------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        stored = await self.inner.get(key)
        return None if stored is None else self.unpack(key, stored)

    async def get_entry(self, key: str) -> Entry | None:
        got = await self.inner.get_entry(key)
        return None if got is None else (self.unpack(key, got[0]), got[1])

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found = await self.inner.get_many(keys)
        return {key: self.unpack(key, stored) for key, stored in found.items()}

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        self._refuse_large((value,))
        return await self.inner.set(
            key, self.pack(key, value), ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        self._refuse_large([value for _, value in items])
        sealed = [(key, self.pack(key, value)) for key, value in items]
        return await self.inner.set_many(
            sealed, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        async for key, stored in self.inner.scan(pattern):
            yield key, self.unpack(key, stored)

    # --- contract v1.1 -----------------------------------------------------------------------
    # Ciphertexts are randomized, so a compare against a fresh encryption of ``expected``
    # never matches. Instead: read the exact stored envelope, decrypt and compare, then let
    # the backend's own compare_and_set/compare_and_delete check *those bytes* are still
    # there. That keeps the backend's atomicity: if anyone wrote in between, the envelope
    # differs and we read again. A False is decided on one read (the value was not
    # ``expected`` then), a True by the backend's atomic operation.
    async def compare_and_set(
        self,
        key: str,
        expected: bytes,
        value: bytes,
        *,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        swap = self._inner_op("compare_and_set")
        self._refuse_large((value,))
        while True:
            stored = await self.inner.get(key)
            if stored is None or self.unpack(key, stored) != expected:
                return False
            if await swap(key, stored, self.pack(key, value), ttl_ms=ttl_ms, tags=tags):
                return True

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        remove = self._inner_op("compare_and_delete")
        while True:
            stored = await self.inner.get(key)
            if stored is None or self.unpack(key, stored) != expected:
                return False
            if await remove(key, stored):
                return True

    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        """An encrypted counter: read, add, compare-and-set the exact envelope read (retried
        when another writer got there first). The backend's own incr cannot add to a
        ciphertext. Expiry and tags are kept by writing back the remaining ttl (ms) and the
        tags read; an ``expire``/``persist`` of the same key landing between that read and
        the write is the one change this can undo (docs/encryption.md)."""
        swap = self._inner_op("compare_and_set")
        while True:
            entry = await self.inner.get_entry(key)
            if entry is None:
                result = add_to_counter(0, delta)
                created = await self.inner.set(
                    key,
                    self.pack(key, encode_counter(result)),
                    ttl_ms=ttl_ms,
                    if_not_exists=True,
                    tags={},
                )
                if created:
                    return result
                continue
            stored, left_ms = entry
            result = add_to_counter(parse_counter(self.unpack(key, stored)), delta)
            try:
                tags = await self.inner.get_tags(key)
            except KeyNotFoundError:
                continue  # expired or deleted since the read: start again
            keep = None if left_ms is None else max(1, left_ms)
            if await swap(
                key, stored, self.pack(key, encode_counter(result)), ttl_ms=keep, tags=tags
            ):
                return result

    def __repr__(self) -> str:
        return f"<EncryptionProvider {self.spec!r} over {self.inner!r}>"
