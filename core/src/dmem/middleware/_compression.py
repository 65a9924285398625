"""``Compression``: compress large values on the way in, transparently on the way out.

Stored format of a compressed value::

    b"\\x00Z" | algorithm (1 byte: z=zlib, s=zstd, 4=lz4) | size (4 bytes, big-endian) | payload

``size`` is the decompressed length. It is checked against ``max_size`` before
anything is decompressed, and decompression is bounded by it, so no stored
value (corrupt or hostile) can exhaust memory: both cases raise
:class:`CorruptValueError`. Values without the marker pass through untouched,
so values written before compression was switched on still read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from .._codec import COMPRESSED_TAG
from .._pattern import Pattern
from ..errors import CorruptValueError, InvalidArgumentError
from ..provider import Entry, KVProvider
from ._base import Wrapper

__all__ = ["Compression", "CompressionProvider"]

_HEADER = struct.Struct(">I")
_PREFIX_LEN = len(COMPRESSED_TAG) + 1 + _HEADER.size
_MAX_STORABLE = 2**32 - 1

Compressor = Callable[[bytes], bytes]
Decompressor = Callable[[bytes, int], bytes]


def _zlib(level: int | None) -> tuple[Compressor, Decompressor]:
    lvl = 6 if level is None else level

    def compress(data: bytes) -> bytes:
        return zlib.compress(data, lvl)

    def decompress(payload: bytes, size: int) -> bytes:
        d = zlib.decompressobj()
        out = d.decompress(payload, size + 1)
        if len(out) > size or d.unconsumed_tail:
            raise CorruptValueError("compressed value is larger than its header says")
        return out

    return compress, decompress


def _zstd(level: int | None) -> tuple[Compressor, Decompressor]:
    try:
        import zstandard
    except ImportError as exc:
        raise InvalidArgumentError(
            "algorithm 'zstd' needs the zstandard package: pip install zstandard"
        ) from exc
    compressor = zstandard.ZstdCompressor(level=3 if level is None else level)
    decompressor = zstandard.ZstdDecompressor()

    def decompress(payload: bytes, size: int) -> bytes:
        declared = zstandard.frame_content_size(payload)
        if declared not in (-1, size):
            raise CorruptValueError("compressed value's frame disagrees with its header")
        return decompressor.decompress(payload, max_output_size=size)

    return compressor.compress, decompress


def _lz4(level: int | None) -> tuple[Compressor, Decompressor]:
    try:
        import lz4.block
    except ImportError as exc:
        raise InvalidArgumentError(
            "algorithm 'lz4' needs the lz4 package: pip install lz4"
        ) from exc
    compression = 0 if level is None else level

    def compress(data: bytes) -> bytes:
        out: bytes = lz4.block.compress(
            data,
            mode="high_compression" if compression > 0 else "default",
            compression=compression,
            store_size=False,
        )
        return out

    def decompress(payload: bytes, size: int) -> bytes:
        out: bytes = lz4.block.decompress(payload, uncompressed_size=size)
        return out

    return compress, decompress


_ALGORITHMS: dict[str, tuple[bytes, Callable[[int | None], tuple[Compressor, Decompressor]]]] = {
    "zlib": (b"z", _zlib),
    "zstd": (b"s", _zstd),
    "lz4": (b"4", _lz4),
}


class Compression:
    """Middleware spec: ``Compression(threshold=1024, algorithm="zlib", level=None,
    max_size=64 MiB)``."""

    name = "compression"

    def __init__(
        self,
        *,
        threshold: int = 1024,
        algorithm: str = "zlib",
        level: int | None = None,
        max_size: int = 64 * 1024 * 1024,
    ) -> None:
        if type(threshold) is not int or threshold < 0:
            raise InvalidArgumentError("Compression threshold must be an int >= 0")
        if algorithm not in _ALGORITHMS:
            raise InvalidArgumentError(
                f"unknown compression algorithm {algorithm!r}; choose from {sorted(_ALGORITHMS)}"
            )
        if level is not None and type(level) is not int:
            raise InvalidArgumentError("Compression level must be an int")
        if type(max_size) is not int or not 0 < max_size <= _MAX_STORABLE:
            raise InvalidArgumentError("Compression max_size must be an int in 1..2**32-1")
        self.threshold = threshold
        self.algorithm = algorithm
        self.level = level
        self.max_size = max_size
        tag, make = _ALGORITHMS[algorithm]
        self._marker = COMPRESSED_TAG + tag
        self._compress, _ = make(level)  # fails now if the algorithm's package is missing

    def wrap(self, inner: KVProvider) -> CompressionProvider:
        return CompressionProvider(inner, self)

    def __repr__(self) -> str:
        return (
            f"Compression(threshold={self.threshold}, algorithm={self.algorithm!r}, "
            f"level={self.level}, max_size={self.max_size})"
        )


class CompressionProvider(Wrapper):
    """The provider a :class:`Compression` spec wraps around ``inner``."""

    def __init__(self, inner: KVProvider, spec: Compression) -> None:
        super().__init__(inner)
        self._threshold = spec.threshold
        self._max_size = spec.max_size
        self._marker = spec._marker
        self._compress = spec._compress
        self._decompressors: dict[bytes, Decompressor] = {}

    # --- the transformation ----------------------------------------------------------------
    def pack(self, value: bytes) -> bytes:
        """``value`` compressed and marked, or unchanged when small or incompressible."""
        size = len(value)
        if size < self._threshold or size > self._max_size:
            return value
        packed = self._marker + _HEADER.pack(size) + self._compress(value)
        return packed if len(packed) < size else value

    def unpack(self, stored: bytes) -> bytes:
        """The original bytes of a stored value (unchanged when not compressed)."""
        if stored[:2] != COMPRESSED_TAG:
            return stored
        if len(stored) < _PREFIX_LEN:
            raise CorruptValueError("compressed value is truncated")
        tag = stored[2:3]
        (size,) = _HEADER.unpack_from(stored, 3)
        if size > self._max_size:
            raise CorruptValueError(
                f"compressed value would decompress to {size} bytes, over max_size={self._max_size}"
            )
        decompress = self._decompressor(tag)
        try:
            out = decompress(stored[_PREFIX_LEN:], size)
        except CorruptValueError:
            raise
        except Exception as exc:
            raise CorruptValueError(f"compressed value cannot be decompressed: {exc}") from exc
        if len(out) != size:
            raise CorruptValueError("compressed value does not match its recorded size")
        return out

    def _decompressor(self, tag: bytes) -> Decompressor:
        found = self._decompressors.get(tag)
        if found is None:
            for algo_tag, make in _ALGORITHMS.values():
                if algo_tag == tag:
                    try:
                        found = make(None)[1]
                    except InvalidArgumentError as exc:
                        raise CorruptValueError(str(exc)) from exc
                    self._decompressors[tag] = found
                    break
            else:
                raise CorruptValueError(f"unknown compression algorithm tag {tag!r}")
        return found

    # --- provider calls that carry values ----------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        stored = await self.inner.get(key)
        return None if stored is None else self.unpack(stored)

    async def get_entry(self, key: str) -> Entry | None:
        got = await self.inner.get_entry(key)
        return None if got is None else (self.unpack(got[0]), got[1])

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found = await self.inner.get_many(keys)
        return {key: self.unpack(stored) for key, stored in found.items()}

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        return await self.inner.set(
            key, self.pack(value), ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        packed = [(key, self.pack(value)) for key, value in items]
        return await self.inner.set_many(
            packed, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        async for key, stored in self.inner.scan(pattern):
            yield key, self.unpack(stored)

    # compare_and_* compare stored bytes: ``expected`` packed as a write of it would be
    # (compression is deterministic for one algorithm and level). incr needs nothing: an
    # int's text is never stored compressed (too short to shrink).
    async def compare_and_set(
        self,
        key: str,
        expected: bytes,
        value: bytes,
        *,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        return await super().compare_and_set(
            key, self.pack(expected), self.pack(value), ttl_ms=ttl_ms, tags=tags
        )

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        return await super().compare_and_delete(key, self.pack(expected))
