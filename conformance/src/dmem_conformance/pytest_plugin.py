"""The pytest11 plugin of dmem-conformance (loaded in every pytest run where it is installed).

It imports nothing but pytest and the standard library up front. It adds
``--dmem-url`` (run the whole suite against any installed backend) and
``--dmem-profile``, registers the suite's markers, fails suite tests that
skip for any reason other than a declared capability gap, names the contract
clause in every suite failure, and prints a clause table when asked.
"""

from __future__ import annotations

import os
import pytest

__all__ = [
    "pytest_addoption",
    "pytest_configure",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dmem", "dmem conformance suite")
    group.addoption(
        "--dmem-url",
        dest="dmem_url",
        default=None,
        help="run the dmem conformance suite against this store URL (e.g. memory://x)",
    )
    group.addoption(
        "--dmem-profile",
        dest="dmem_profile",
        default=None,
        help="Hypothesis profile of the suite: ci (default) or thorough "
        "(also DMEM_HYPOTHESIS_PROFILE)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dmem_clause(name): the contract clause a suite test checks")
    config.addinivalue_line(
        "markers", "dmem_requires(*capabilities): capabilities a suite test needs"
    )
    profile = config.getoption("dmem_profile") or os.environ.get("DMEM_HYPOTHESIS_PROFILE")
    if profile is not None and profile not in ("ci", "thorough"):
        raise pytest.UsageError(f"--dmem-profile must be ci or thorough, not {profile!r}")
    url = config.getoption("dmem_url")
    if url:
        from . import _url_run

        _url_run.configure(config, url)

