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

__all__ = ["main", "run_pytest"]


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


def run_pytest(args: Sequence[str], *, rootdir: str | None = None) -> tuple[int, ClauseResults]:
    """Run pytest in-process on ``args``, isolated from the current directory's configuration.

    ``rootdir`` (default: this package's directory) only shapes the test ids shown.

    Returns pytest's exit code and the clause results of every suite test that ran.
    """
    collector = _Collector()
    with tempfile.TemporaryDirectory(prefix="dmem-conformance-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        full = [
            "-c",
            str(ini),
            "--rootdir",
            rootdir or str(Path(__file__).parent),
            "--import-mode=importlib",
            "-p",
            "no:cacheprovider",
            # The suite runs its own event loops; pytest-asyncio is not needed here.
            "-p",
            "no:asyncio",
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
            "-q",
            "--tb=short",
            "-rfE",
            *args,
        ]
        if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
            full[:0] = ["-p", "dmem_conformance.pytest_plugin"]
        code = int(pytest.main(full, plugins=[collector]))
    if code == 0 and collector.collected == 0:
        code = int(pytest.ExitCode.NO_TESTS_COLLECTED)
    if code == 0 and collector.results.failed:
        code = int(pytest.ExitCode.TESTS_FAILED)
    return code, collector.results


def main(url: str, profile: str = "ci", pytest_args: Sequence[str] = ()) -> int:
    """Run the conformance suite against ``url``; print the clause table; return the exit code."""
    if profile not in ("ci", "thorough"):
        print(f"unknown profile {profile!r}; choose from ci, thorough")
        return int(pytest.ExitCode.USAGE_ERROR)
    code, results = run_pytest(["--dmem-url", url, "--dmem-profile", profile, *pytest_args])
    from dmem import redact_url

    print()
    print(results.table(title=f"dmem conformance: {redact_url(url)} (profile {profile})"))
    skipped = results.not_run()
    if skipped and code == 0:
        # The run passed, but only part of the contract ran (pytest arguments such as -k
        # chose the tests): say so, so a green exit is not read as "this backend conforms".
        print(
            f"partial run: {len(skipped)} clause(s) not run, so this is no verdict on the "
            "whole contract; run without pytest arguments for one"
        )
    return code


if __name__ == "__main__":  # pragma: no cover - python -m dmem_conformance.runner URL [PROFILE]
    raise SystemExit(main(sys.argv[1], *(sys.argv[2:3] or ["ci"])))
