"""A TEACHING AID: ``shelf+broken://NAME``, the shelf with one classic bug, on purpose.

Run the conformance suite on it to see what a failing run looks like::

    dmem conformance shelf+broken://demo

It fails clause ``values.awkward`` (and others that happen to store ``""``),
with the message ``'k0' = '' read back as missing``. Never use this scheme
for data.

The bug: many key-value clients answer a missing key with an empty reply, and
code written against them tests ``if not reply: return None``. Here is the
same mistake made with dmem's bytes: the empty string ``""`` (stored as the
JSON text ``b'""'``) reads back as missing. The contract says ``""`` and
``b""`` are present values.
"""

from __future__ import annotations

import dmem

from .provider import ShelfProvider

__all__ = ["BrokenShelfProvider"]

_EMPTY_STRING = dmem.encode("")  # b'""': the bytes a provider receives for the value ""


class BrokenShelfProvider(ShelfProvider):
    """``ShelfProvider`` that reads a stored ``""`` back as missing. Deliberately wrong."""

    name = "shelf+broken"

    async def get_entry(self, key: str) -> dmem.Entry | None:
        entry = await super().get_entry(key)
        if entry is not None and entry[0] == _EMPTY_STRING:
            return None  # BUG (on purpose): "" is a present value, see docs/contract.md
        return entry
