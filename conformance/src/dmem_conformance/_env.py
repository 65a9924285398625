"""How tests react to a backend that is not there: skip locally, fail in CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["DownURL", "backend_missing", "backends_required"]


class DownURL:
    """The URL of a backend that is down for the URL suite's run under way, or None.

    Set by the pytest plugin from ``--dmem-unreachable-url`` at configure time and cleared
    at unconfigure (the runner runs pytest in-process, possibly more than once). Kept here,
    not in url_suite, which pytest may import under another module name.
    """

    url: str | None = None


def backends_required() -> bool:
    """True when ``DMEM_REQUIRE_BACKENDS=1`` (set in CI): a missing backend is a failure."""
    return os.environ.get("DMEM_REQUIRE_BACKENDS", "") == "1"


def backend_missing(reason: str) -> NoReturn:
    """Skip the test because a backend is unavailable, or fail under DMEM_REQUIRE_BACKENDS=1."""
    if backends_required():
        pytest.fail(f"backend required (DMEM_REQUIRE_BACKENDS=1) but unavailable: {reason}")
    pytest.skip(reason)
