"""The pytest11 plugin of dmem-conformance (loaded in every pytest run where it is installed).

It imports nothing but pytest and the standard library up front (the suite
loads only when a test uses it or ``--dmem-url`` is given). It

* adds ``--dmem-url URL`` (run the whole suite against any installed backend,
  instead of the collected tests), ``--dmem-middleware``, ``--dmem-profile``
  and ``--dmem-table``;
* registers the suite's markers;
* fails a suite test that skips for any reason other than a capability its
  suite class declares it lacks (or ``backend_missing`` outside CI), so a
  misconfigured run can never pass by skipping;
* names the contract clause in every suite failure, and prints a
  clause-by-clause table with ``--dmem-url``/``--dmem-table``;
* gives every test two fixtures of the test kit (``dmem_conformance.testkit``):
  ``dmem_free_port`` (a loopback port nothing listens on) and ``dmem_closed_port`` (one
  that refuses connections for the whole test).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "dmem_closed_port",
    "dmem_free_port",
    "pytest_addoption",
    "pytest_configure",
    "pytest_runtest_makereport",
    "pytest_terminal_summary",
]

_ENV_PROFILE = "DMEM_HYPOTHESIS_PROFILE"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dmem", "dmem conformance suite")
    group.addoption(
        "--dmem-url",
        dest="dmem_url",
        default=None,
        help="run the dmem conformance suite (only) against this store URL, e.g. memory://x",
    )
    group.addoption(
        "--dmem-middleware",
        dest="dmem_middleware",
        default="",
        help="with --dmem-url: comma separated middleware names, outermost first "
        "(e.g. cache,compression)",
    )
    group.addoption(
        "--dmem-profile",
        dest="dmem_profile",
        default=None,
        help=f"Hypothesis profile of the suite: ci (default) or thorough (also ${_ENV_PROFILE})",
    )
    group.addoption(
        "--dmem-unreachable-url",
        dest="dmem_unreachable_url",
        default=None,
        help="with --dmem-url: a URL of the same backend that is down (e.g. a closed port), "
        "so the down-backend clauses run too",
    )
    group.addoption(
        "--dmem-table",
        dest="dmem_table",
        action="store_true",
        default=False,
        help="print the clause-by-clause table of the dmem suites that ran",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dmem_clause(name): the contract clause a suite test checks")
    config.addinivalue_line(
        "markers", "dmem_requires(*capabilities): capabilities a suite test needs"
    )
    profile = config.getoption("dmem_profile") or os.environ.get(_ENV_PROFILE)
    if profile is not None and profile not in ("ci", "thorough"):
        raise pytest.UsageError(f"dmem profile must be ci or thorough, not {profile!r}")
    url = config.getoption("dmem_url")
    if url:
        # Collect the URL suite module instead of the command line's paths.
        config.args[:] = [str(Path(__file__).with_name("url_suite.py"))]
        from ._env import DownURL  # the suite is needed now: import it

        DownURL.url = config.getoption("dmem_unreachable_url") or None


def pytest_unconfigure(config: pytest.Config) -> None:
    env = sys.modules.get("dmem_conformance._env")  # imported only if a URL run set it
    if env is not None:
        env.DownURL.url = None


@pytest.fixture
def dmem_free_port() -> int:
    """A free TCP port on 127.0.0.1 (``dmem_conformance.testkit.free_port``)."""
    from .testkit import free_port

    return free_port()


@pytest.fixture
def dmem_closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for the whole test
    (``dmem_conformance.testkit.closed_port``)."""
    from .testkit import closed_port

    with closed_port() as port:
        yield port


def _clause(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("dmem_clause")
    if marker is None or not marker.args:
        return None
    name = marker.args[0]
    return name if isinstance(name, str) else None


def _allowed_skip(item: pytest.Item, call: pytest.CallInfo[None]) -> bool:
    """A declared capability gap, a missing optional provider member, or ``backend_missing``
    outside CI."""
    from ._marks import CAPABILITY_SKIP_PREFIX, OPTIONAL_SKIP_PREFIX

    requires = item.get_closest_marker("dmem_requires")
    lacks = getattr(getattr(item, "cls", None), "lacks", None) or {}
    excinfo = call.excinfo
    message = str(excinfo.value) if excinfo is not None else ""
    declared = requires is not None and any(cap in lacks for cap in requires.args)
    if declared and message.startswith(CAPABILITY_SKIP_PREFIX):
        return True
    if message.startswith(OPTIONAL_SKIP_PREFIX):
        return True  # an optional provider member is missing: reported as not run
    if excinfo is not None:
        from ._env import backend_missing, backends_required

        code = backend_missing.__code__
        if not backends_required() and any(
            entry.frame.code.raw is code for entry in excinfo.traceback
        ):
            return True
    return False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    name = _clause(item)
    if name is None:
        return report
    report.user_properties.append(("dmem_clause", name))
    if report.skipped and not hasattr(report, "wasxfail") and not _allowed_skip(item, call):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"[dmem clause {name}] a conformance test may only skip for a capability its "
            f"suite class declares in `lacks`; it skipped: {reason}"
        )
    if report.failed:
        from ._clauses import CLAUSES

        report.sections.append(("dmem contract clause", f"{name}: {CLAUSES.get(name, '')}"))
        crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
        if crash is not None and isinstance(getattr(crash, "message", None), str):
            crash.message = f"[dmem clause {name}] {crash.message}"
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    runner = any(getattr(p, "dmem_runner", False) for p in config.pluginmanager.get_plugins())
    wanted = not runner and (config.getoption("dmem_table") or config.getoption("dmem_url"))
    reports = [
        report
        for reports in terminalreporter.stats.values()
        for report in reports
        if any(name == "dmem_clause" for name, _ in getattr(report, "user_properties", ()))
    ]
    if not reports:
        return
    from ._report import ClauseResults

    results = ClauseResults()
    results.add_all(reports)
    if wanted:
        terminalreporter.write_line("")
        terminalreporter.write_line(results.table(all_clauses=bool(config.getoption("dmem_url"))))
    elif results.failed and not runner:
        terminalreporter.write_line("")
        terminalreporter.write_line("dmem contract clauses failed: " + ", ".join(results.failed))
