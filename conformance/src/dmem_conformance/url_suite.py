"""The suite as run by ``pytest --dmem-url=URL`` and ``dmem conformance URL``.

Not collected otherwise (the file name does not match ``test_*.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from . import KVSuite, StoreFactory, url_factory

__all__ = ["TestConformance"]


class TestConformance(KVSuite):
    """KVSuite on ``--dmem-url``, every store under ``--dmem-middleware``."""

    lacks: ClassVar[dict[str, str]] = {
        "unreachable": "a URL run cannot stop the backend (run KVSuite in the plugin's tests)",
    }

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
