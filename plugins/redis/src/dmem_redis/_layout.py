"""Where dmem puts things in Redis: one prefix per namespace (and per bucket in a cluster).

For namespace ``ns`` (``N`` = its length in UTF-8 bytes) the prefix ``P`` is

* standalone / sentinel: ``dmem:N:ns:``
* cluster, bucket ``b`` of ``B``: ``dmem:{b.H}:N:ns:`` where ``H`` is the CRC-32 of the
  namespace in hex. The ``{...}`` hash tag pins a bucket to one slot, so one key's
  value, tags and tag-index entries live together and one Lua script updates them
  atomically; a key's bucket is ``crc32(key) % B``.

Under ``P``: ``k:<key>`` holds the value (a plain string: GET/MGET read it directly),
``m:<key>`` a hash of the key's tags (only when it has tags; same expiry as the value)
and ``t:<len(name)>:<name>:<value>`` the set of keys tagged ``name=value`` (the name is
length-prefixed, so a ``:`` in a tag name or value is unambiguous). The namespace is
length-prefixed too, so ``a`` never sees ``ab``; user keys (``k:``) and bookkeeping
(``m:``, ``t:``) can never collide.
"""

from __future__ import annotations

import zlib

__all__ = ["Layout", "glob_escape", "tag_suffix"]

_GLOB_SPECIAL = frozenset("*?[]\\")


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis MATCH pattern."""
    if not _GLOB_SPECIAL.intersection(text):
        return text
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


def tag_suffix(name: str, value: str) -> str:
    """The part of a tag-index key after ``P``."""
    return f"t:{len(name.encode())}:{name}:{value}"


class Layout:
    """Precomputed prefixes of one namespace; ``buckets=None`` means not a cluster."""

    __slots__ = (
        "_bucket_by_head",
        "_ns_part_bytes",
        "_value_prefix_bytes",
        "buckets",
        "match_prefix",
        "ns_part",
        "prefixes",
        "value_prefix",
        "value_prefixes",
    )

    def __init__(self, namespace: str, buckets: int | None) -> None:
        self.ns_part = f"{len(namespace.encode())}:{namespace}:"
        self._ns_part_bytes = self.ns_part.encode()
        self.buckets = buckets
        if buckets is None:
            self.prefixes = ["dmem:" + self.ns_part]
            self.match_prefix = glob_escape(self.prefixes[0] + "k:")
            self._bucket_by_head: dict[bytes, int] = {}
        else:
            nsh = f"{zlib.crc32(namespace.encode()):08x}"
            self.prefixes = [f"dmem:{{{b}.{nsh}}}:{self.ns_part}" for b in range(buckets)]
            # Any bucket of this namespace; parse_value_key re-checks the bucket exactly.
            self.match_prefix = f"dmem:{{*.{nsh}}}:" + glob_escape(self.ns_part + "k:")
            self._bucket_by_head = {f"dmem:{{{b}.{nsh}}}".encode(): b for b in range(buckets)}
        self.value_prefixes = [p + "k:" for p in self.prefixes]
        self.value_prefix = self.value_prefixes[0]
        self._value_prefix_bytes = [p.encode() for p in self.value_prefixes]

    def bucket(self, key: str) -> int:
        if self.buckets is None:
            return 0
        return zlib.crc32(key.encode()) % self.buckets

    def value_key(self, key: str) -> str:
        if self.buckets is None:
            return self.value_prefix + key
        return self.value_prefixes[zlib.crc32(key.encode()) % self.buckets] + key

    def match(self, literal_prefix: str) -> str:
        """SCAN MATCH pattern for value keys whose user key starts with ``literal_prefix``."""
        return self.match_prefix + glob_escape(literal_prefix) + "*"

    def parse_value_key(self, raw: bytes) -> str | None:
        """The user key of a scanned Redis key, or None if it is not one of our value keys."""
        if self.buckets is None:
            head = self._value_prefix_bytes[0]
            if raw.startswith(head):
                return raw[len(head) :].decode()
            return None
        end = raw.find(b"}")
        bucket = self._bucket_by_head.get(raw[: end + 1]) if end > 0 else None
        if bucket is None:
            return None
        head = self._value_prefix_bytes[bucket]
        if not raw.startswith(head):
            return None
        key = raw[len(head) :].decode()
        # A key in the wrong bucket was not written by dmem (or by another bucket count).
        return key if self.bucket(key) == bucket else None

    def kind_of(self, raw: bytes) -> bytes:
        """What a key matched by :meth:`namespace_match` is: the two bytes after its ``P``
        (``k:``, ``m:``, ``t:``), or ``b""`` for one that is not laid out as dmem's."""
        if self.buckets is None:
            head = len(self.prefixes[0].encode())
        else:
            end = raw.find(b"}:")
            if end < 0 or not raw.startswith(self._ns_part_bytes, end + 2):
                return b""
            head = end + 2 + len(self._ns_part_bytes)
        return raw[head : head + 2]

    def namespace_match(self) -> str:
        """SCAN MATCH pattern for every key of this namespace (values and bookkeeping)."""
        if self.buckets is None:
            return glob_escape(self.prefixes[0]) + "*"
        return (
            self.match_prefix[: self.match_prefix.index("}") + 2] + glob_escape(self.ns_part) + "*"
        )
