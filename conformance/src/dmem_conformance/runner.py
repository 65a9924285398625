"""``dmem conformance URL``: run the suite on a URL and print a clause-by-clause table.

``main(url, profile, pytest_args)`` first opens the URL once (``probe``); then
runs pytest in-process, isolated from the current directory's pytest
configuration (an empty ini in a temporary rootdir), and returns the exit code:

* 0: every clause that ran passed or was a declared gap;
* 1: tests failed (other pytest codes pass through: 2 interrupted, 3 internal
  error, 5 nothing collected);
* 4 (``EXIT_BAD_URL``, pytest's usage error): the URL cannot be opened at all (no
  plugin for its scheme, a malformed URL or option, ``create=false`` and no such
  store: any other DmemError) or the profile is unknown;
* 6 (``EXIT_UNREACHABLE``): the backend cannot be reached (down, refusing the
  connection or the credentials). One line, ``cannot reach URL: <url>: <reason>``
  with the password redacted, and no clause runs: without it, every test would
  print the same connection error, thousands of lines in all. 6 is the first
  code pytest does not use, so the two never mean the same.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ._report import ClauseResults

__all__ = [
    "EXIT_BAD_URL",
    "EXIT_UNREACHABLE",
    "PROBE_NAMESPACE",
    "PROBE_TIMEOUT",
    "down_twin",
    "main",
    "probe",
    "run_pytest",
]

EXIT_BAD_URL = int(pytest.ExitCode.USAGE_ERROR)
EXIT_UNREACHABLE = 6
PROBE_NAMESPACE = "dmemc-probe"
PROBE_TIMEOUT = 10.0
"""Seconds the probe waits for the backend; also its ``timeout`` option where the plugin
takes one (the plugin's own default may be longer: a server that does not answer at all
must not keep the run waiting)."""


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


async def _open_and_check(url: str, options: dict[str, Any]) -> None:
    import dmem

    # The probe writes nothing; one fixed namespace, so a backend that makes something per
    # namespace (Chroma: a collection) gets one for every run, not one more per run.
    store = await dmem.open(url, namespace=PROBE_NAMESPACE, **options)
    try:
        report = await store.health()
        if report.status == "unhealthy":
            raise dmem.ProviderUnavailableError(report.message or "health() is unhealthy")
    finally:
        await store.aclose()


async def _probe(url: str) -> None:
    import dmem

    try:
        await _open_and_check(url, {"timeout": PROBE_TIMEOUT})
    except dmem.InvalidArgumentError as exc:
        # The plugin takes no ``timeout`` option (or the URL sets it already): as it is.
        if "timeout" not in str(exc):
            raise
        await _open_and_check(url, {})


def probe(url: str) -> tuple[int, str] | None:
    """Open ``url`` once: None when it works, else ``(exit code, one line to print)``.

    ``EXIT_UNREACHABLE`` when the backend cannot be reached (a ProviderError, or no
    answer within ``PROBE_TIMEOUT`` seconds); ``EXIT_BAD_URL`` when the URL cannot be
    opened at all. Anything else (a raw exception from the plugin) is left to the suite,
    whose clauses say what is wrong. The line never shows a password of the URL.
    """
    import dmem

    from ._factory import secrets_of

    shown = dmem.redact_url(url) if isinstance(url, str) else repr(url)
    try:
        asyncio.run(asyncio.wait_for(_probe(url), PROBE_TIMEOUT * 2))
    except (dmem.ProviderError, asyncio.TimeoutError) as exc:
        reason = str(exc) or f"no answer within {PROBE_TIMEOUT * 2:g}s"
        code, line = EXIT_UNREACHABLE, f"cannot reach URL: {shown}: {reason}"
    except dmem.DmemError as exc:  # a bad option, no plugin, a store that does not exist
        code, line = EXIT_BAD_URL, f"cannot open URL: {shown}: {exc}"
    except Exception:  # noqa: BLE001 - a plugin bug: the suite reports it clause by clause
        return None
    else:
        return None
    # One line, and never a secret, whatever the plugin's message holds.
    line = " ".join(line.split())
    for secret in secrets_of(url):
        line = line.replace(secret, "***")
    return code, line


def down_twin(url: str) -> str | None:
    """The URL of the same backend that is down, from the URL's plugin, or None."""
    import dmem
    from dmem._open import split_url

    try:
        scheme = split_url(url)[0]
    except dmem.DmemError:
        return None
    spec = dmem.registry().provider_for("kv", scheme)
    if spec is None or spec.unreachable_url is None:
        return None
    return spec.unreachable_url(url)


def main(
    url: str,
    profile: str = "ci",
    pytest_args: Sequence[str] = (),
    unreachable: str | None = None,
) -> int:
    """Run the conformance suite against ``url``; print the clause table; return the exit code.

    ``unreachable``: a URL of the same backend that is down, for the down-backend clauses;
    by default the twin the URL's plugin gives (``ProviderSpec.unreachable_url``), if any.
    """
    if profile not in ("ci", "thorough"):
        print(f"unknown profile {profile!r}; choose from ci, thorough")
        return int(pytest.ExitCode.USAGE_ERROR)
    refused = probe(url)
    if refused is not None:
        code, line = refused
        print(line, file=sys.stderr)
        return code
    down = unreachable or down_twin(url)
    args = ["--dmem-url", url, "--dmem-profile", profile, *pytest_args]
    if down:
        args[2:2] = ["--dmem-unreachable-url", down]
    code, results = run_pytest(args)
    from dmem import redact_url

    print()
    print(results.table(title=f"dmem conformance: {redact_url(url)} (profile {profile})"))
    if not down:
        # The run can pass with the down-backend clause skipped: say that the verdict
        # leaves it out, so a green exit is not read as "this backend fails well".
        print(
            "partial verdict: the down-backend clause (errors.unavailable) did not run: "
            "this URL's plugin gives no unreachable twin; pass --unreachable URL (the same "
            "backend, down: e.g. a closed port) for a whole verdict"
        )
    for name, note in results.optional_not_run():
        # An optional provider member is missing (footprint, max_value_bytes): the clause
        # reads as not run, and the verdict leaves it out.
        print(f"partial verdict: {name} did not run: {note}")
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
