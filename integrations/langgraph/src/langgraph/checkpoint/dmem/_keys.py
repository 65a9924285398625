"""The dmem key layout of the checkpointers (one place, so it cannot drift between them).

Every key is ``kind:part:part...`` where each part (thread ID, checkpoint namespace,
checkpoint ID, channel, version, task ID) is percent-encoded (``urllib.parse.quote`` with no
safe characters): an encoded part never holds ``:``, so two different tuples of parts never
make the same key, whatever characters the IDs have, and ``kind:part:`` is a prefix only of
its own keys. ``dmem.escape_pattern`` then makes such a prefix a literal glob.

* ``c:{thread}:{ns}:{checkpoint_id}`` a checkpoint (without its channel values), its
  metadata and its parent's ID;
* ``b:{thread}:{ns}:{channel}:{version}`` one channel value at one version (a blob);
* ``w:{thread}:{ns}:{checkpoint_id}:{task_id}:{idx}`` one pending write.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

import dmem

__all__ = [
    "BLOB",
    "CHECKPOINT",
    "KINDS",
    "WRITE",
    "blob_key",
    "checkpoint_key",
    "decode_parts",
    "part",
    "prefix_pattern",
    "version_part",
    "write_key",
]

CHECKPOINT = "c"
BLOB = "b"
WRITE = "w"
KINDS = (CHECKPOINT, BLOB, WRITE)


def part(text: str) -> str:
    """One key part: ``text`` percent-encoded (UTF-8), never containing ``:``."""
    try:
        return quote(text, safe="")
    except UnicodeEncodeError as exc:
        # A lone surrogate cannot be stored by any backend; say so before any I/O.
        raise dmem.InvalidArgumentError(f"an ID must be valid Unicode text, not {text!r}") from exc


def version_part(version: str | int | float) -> str:
    """A channel version as a key part; repr keeps ``1`` and ``"1"`` apart."""
    return part(repr(version))


def _key(kind: str, *parts: str) -> str:
    return ":".join((kind, *(part(p) for p in parts)))


def checkpoint_key(thread_id: str, ns: str, checkpoint_id: str) -> str:
    return _key(CHECKPOINT, thread_id, ns, checkpoint_id)


def blob_key(thread_id: str, ns: str, channel: str, version: str | int | float) -> str:
    return f"{_key(BLOB, thread_id, ns, channel)}:{version_part(version)}"


def write_key(thread_id: str, ns: str, checkpoint_id: str, task_id: str, idx: int) -> str:
    return _key(WRITE, thread_id, ns, checkpoint_id, task_id, str(idx))


def prefix_pattern(kind: str, *parts: str) -> str:
    """The glob of every key of ``kind`` whose first parts are ``parts``."""
    head = ":".join((kind, *(part(p) for p in parts))) + ":"
    return dmem.escape_pattern(head) + "*"


def decode_parts(key: str) -> list[str]:
    """The decoded parts of a key (without its kind)."""
    return [unquote(p) for p in key.split(":")[1:]]
