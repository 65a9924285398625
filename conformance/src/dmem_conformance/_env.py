"""How tests react to a backend that is not there: skip locally, fail in CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["backend_missing", "backends_required"]


def backends_required() -> bool:
    """True when ``DMEM_REQUIRE_BACKENDS=1`` (set in CI): a missing backend is a failure."""
    return os.environ.get("DMEM_REQUIRE_BACKENDS", "") == "1"


def backend_missing(reason: str) -> NoReturn:
    """Skip the test because a backend is unavailable, or fail under DMEM_REQUIRE_BACKENDS=1."""
    if backends_required():
        pytest.fail(f"backend required (DMEM_REQUIRE_BACKENDS=1) but unavailable: {reason}")
    pytest.skip(reason)
