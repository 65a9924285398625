"""The suite catches broken backends, each with one contract bug, naming the right clause."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from dmem_conformance.runner import run_pytest

TARGETS = Path(__file__).with_name("targets")
BROKEN = TARGETS / "broken_backends.py"

# bug -> the clause(s) the suite must report as failed for it.
EXPECTED: dict[str, set[str]] = {
    "empty-string-missing": {"values.awkward"},
    "nx-ignored-with-ttl": {"nx.ttl"},
    "ttl-never-expires": {"ttl.expiry", "ttl.absent-everywhere"},
    "question-mark-matches-zero": {"patterns.unicode", "patterns.match"},
    "tags-left-after-delete": {"tags.delete"},
    "bookkeeping-listed": {"namespaces.bookkeeping"},
    "namespace-prefix-leak": {"namespaces.prefix"},
    "clear-crosses-namespaces": {"namespaces.isolation"},
    "get-many-returns-expired": {"ttl.absent-everywhere"},
    "count-off-by-one": {"patterns.match"},
    "persist-keeps-expiry": {"ttl.persist"},
    "set-keeps-old-tags": {"tags.replace"},
    "delete-always-true": {"ops.return-values"},
    "scan-duplicates": {"scan.once"},
    "batch-nx-race": {"nx.batch-tasks", "nx.batch-connections"},
    "time-left-rounded-down": {"ttl.never-zero"},
    "listing-stops-at-one-page": {"listing.pages"},
    "nx-race": {"nx.concurrent-tasks"},
    "ttl-in-milliseconds": {"ttl.remaining"},
    "scan-loads-everything": {"scan.memory"},
    "keys-case-insensitive": {"keys.exact"},
    "ttl-int32": {"errors.any-argument"},
    "batch-writes-partway": {"batch.refused"},
    "tag-index-never-purged": {"storage.bounded"},
    "healthy-while-down": {"errors.unavailable"},
    "raw-error-when-down": {"errors.unavailable"},
    "namespace-unchecked": {"namespaces.rule"},
    "incr-read-then-write": {"counter.exact"},
    "incr-rewrites-key": {"counter.semantics"},
    "cas-read-then-write": {"cas.contenders"},
    "delete-by-tag-crosses-namespaces": {"tags.delete-by-tag"},
    "compare-and-delete-ignores-value": {"lock.exclusive", "cas.semantics"},
    "misses-remembered": {"get-or-set.single-flight"},
    "invalidation-dropped": {"invalidation.delivery"},
}


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_selftest_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_bug_has_an_expectation() -> None:
    bugs = set(_load(BROKEN).BUGS) - {"correct"}
    assert bugs == set(EXPECTED)
    assert len(bugs) >= 12


def test_the_correct_wrapper_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMEM_SELFTEST_BUG", "correct")
    code, results = run_pytest([str(BROKEN)], rootdir=str(TARGETS))
    assert code == 0, results.table()
    assert not results.failed


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_suite_catches_bug(bug: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMEM_SELFTEST_BUG", bug)
    code, results = run_pytest([str(BROKEN)], rootdir=str(TARGETS))
    assert code != 0, f"the suite passed a backend with bug {bug!r}"
    caught = EXPECTED[bug] & set(results.failed)
    assert caught == EXPECTED[bug], (
        f"bug {bug!r}: expected failed clauses {sorted(EXPECTED[bug])}, "
        f"the suite reported {results.failed}"
    )


def test_a_filtered_cli_run_says_it_is_partial(capsys: pytest.CaptureFixture[str]) -> None:
    from dmem_conformance.runner import main

    assert main("memory://selftest-partial", "ci", ["-k", "test_if_not_exists_with_ttl"]) == 0
    out = capsys.readouterr().out
    assert "passed" in out and "not run" in out
    assert "partial run:" in out and "no verdict on the whole contract" in out
