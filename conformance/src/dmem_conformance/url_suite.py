"""The suite as run by ``pytest --dmem-url=URL`` and ``dmem conformance URL``.

Not collected otherwise (the file name does not match ``test_*.py``). The down-backend
clauses run when a URL of the same backend that is down is known: given with
``--dmem-unreachable-url`` (``dmem conformance URL --unreachable URL2``), or the twin
that the URL's plugin gives (``ProviderSpec.unreachable_url``). Without one they are
skipped, and the runner says the verdict is partial.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from . import KVSuite, StoreFactory, url_factory
from ._env import DownURL

__all__ = ["TestConformance"]


class _Lacks:
    """``lacks`` of the URL suite: 'unreachable' unless a down URL is known for this run."""

    def __get__(self, obj: object, owner: type | None = None) -> dict[str, str]:
        if DownURL.url:
            return {}
        return {
            "unreachable": "no URL of this backend that is down: give one with "
            "--unreachable URL (dmem conformance) or --dmem-unreachable-url (pytest)",
        }


class TestConformance(KVSuite):
    """KVSuite on ``--dmem-url``, every store under ``--dmem-middleware``."""

    lacks: ClassVar[dict[str, str]] = _Lacks()  # type: ignore[assignment]

    @pytest.fixture
    def unreachable_store_factory(self) -> StoreFactory | None:
        return url_factory(DownURL.url) if DownURL.url else None

    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest) -> StoreFactory:
        url = request.config.getoption("dmem_url")
        if not url:
            pytest.fail("url_suite runs only with --dmem-url=URL")
        return url_factory(str(url))

    @pytest.fixture
    def middleware(self, request: pytest.FixtureRequest) -> tuple[Any, ...]:
        names = str(request.config.getoption("dmem_middleware") or "")
        return tuple(name.strip() for name in names.split(",") if name.strip())
