"""A conformance ``store_factory`` that tests shared connections and independent ones.

Stores of one process opened on the same backend share its connection (``dmem.sharing``).
The suite's multi-connection clauses (``nx.connections``, ``nx.batch-connections``,
``namespaces.isolation``) need stores on independent connections, or they would race over
one. So the test's 1st, 3rd, 5th ... store is opened as users open theirs (shared: the
default), its 2nd, 4th ... with ``share_connection=false``: every suite test runs on the
shared path, and each multi-connection clause has two or more independent connections,
one of them used by two stores at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dmem
import dmem_conformance


class AlternatingFactory:
    def __init__(self, url: str, **options: Any) -> None:
        self._shared = dmem_conformance.url_factory(url, **options)
        self._own = dmem_conformance.url_factory(url, share_connection=False, **options)
        self.secrets: tuple[str, ...] = getattr(self._shared, "secrets", ())
        self.calls = 0

    async def __call__(self, namespace: str, *, middleware: Sequence[Any] = ()) -> dmem.Store:
        self.calls += 1
        factory = self._shared if self.calls % 2 else self._own
        return await factory(namespace, middleware=middleware)

    def __repr__(self) -> str:
        return f"alternating {self._shared!r}"  # url_factory's repr shows no secret


def alternating_factory(url: str, **options: Any) -> dmem_conformance.StoreFactory:
    return AlternatingFactory(url, **options)
