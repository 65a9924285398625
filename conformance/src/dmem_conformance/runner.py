"""``dmem conformance URL``: run the suite on a URL and print a clause-by-clause table.

``main(url, profile, pytest_args)`` runs pytest in-process, isolated from the
current directory's pytest configuration (an empty ini in a temporary rootdir),
and returns the exit code: 0 only when every clause passed or was a declared gap.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ._report import ClauseResults

__all__ = ["main"]


class _Collector:
    """A pytest plugin object gathering every report, for the table."""

    dmem_runner = True  # tells the pytest plugin the runner prints the table itself

    def __init__(self) -> None:
        self.results = ClauseResults()
        self.collected = 0

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.results.add(report)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collected = len(session.items)


def main(url: str, profile: str = "ci", pytest_args: Sequence[str] = ()) -> int:
    """Run the conformance suite against ``url``; print the clause table; return the exit code."""
    if profile not in ("ci", "thorough"):
        print(f"unknown profile {profile!r}; choose from ci, thorough")
        return 4
    collector = _Collector()
    with tempfile.TemporaryDirectory(prefix="dmem-conformance-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        args = [
            "-c",
            str(ini),
            "--rootdir",
            tmp,
            "-p",
            "no:cacheprovider",
            # The suite runs its own event loops; pytest-asyncio is not needed here.
            "-p",
            "no:asyncio",
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
            "--dmem-url",
            url,
            "--dmem-profile",
            profile,
            "-q",
            "--tb=short",
            "-rfE",
            *pytest_args,
        ]
        if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
            args[:0] = ["-p", "dmem_conformance.pytest_plugin"]
        code = int(pytest.main(args, plugins=[collector]))
    from dmem import redact_url

    title = f"dmem conformance: {redact_url(url)} (profile {profile})"
    print()
    print(collector.results.table(title=title))
    if code == 0 and collector.collected == 0:
        return 5
    if collector.results.failed and code == 0:
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover - python -m dmem_conformance.runner URL
    raise SystemExit(main(sys.argv[1], *(sys.argv[2:3] or ["ci"])))
