"""dmem-shelf: an example third-party dmem plugin, small enough to read in one sitting.

``shelf://NAME`` is a key-value backend kept in this process (one shelf per
NAME, shared by every store opened on it). It passes the whole dmem
conformance suite. ``shelf+broken://NAME`` is the same with one bug on
purpose, to show what a failing conformance run looks like.

    import dmem
    async with dmem.open("shelf://demo", namespace="app") as kv:
        await kv.set("greeting", "hello", ttl=60, tags={"lang": "en"})

Read in this order: ``plugin.py`` (registration), ``provider.py`` (the
contract), ``_shelf.py`` (the toy backend), ``broken.py`` (the bug).
"""

from __future__ import annotations

from .broken import BrokenShelfProvider
from .provider import ShelfProvider

__all__ = ["BrokenShelfProvider", "ShelfProvider"]
