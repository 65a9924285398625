"""Clause-by-clause results: collected from pytest reports, printed as a table.

Imports only the standard library and the clause catalogue, so the pytest
plugin can use it without loading the suite.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._clauses import CLAUSES, OPTIONAL_SKIP_PREFIX

__all__ = ["ClauseResults", "clause_of_report"]

_RANK = {"FAILED": 4, "xfail": 3, "passed": 2, "skipped": 1}


def clause_of_report(report: Any) -> str | None:
    for name, value in getattr(report, "user_properties", ()) or ():
        if name == "dmem_clause" and isinstance(value, str):
            return value
    return None


@dataclass
class _Clause:
    status: str = ""
    tests: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    notes: set[str] = field(default_factory=set)


class ClauseResults:
    """Worst outcome per clause over every suite test (and phase) that reported."""

    def __init__(self) -> None:
        self.clauses: dict[str, _Clause] = {}

    def add(self, report: Any) -> None:
        name = clause_of_report(report)
        if name is None:
            return
        entry = self.clauses.setdefault(name, _Clause())
        test = report.nodeid.split("::")[-1]
        entry.tests.add(test)
        if report.failed:
            status = "FAILED"
            entry.failed.add(test)
        elif hasattr(report, "wasxfail"):
            status = "xfail"
            entry.notes.add(str(report.wasxfail))
        elif report.skipped:
            status = "skipped"
            longrepr = report.longrepr
            if isinstance(longrepr, tuple) and len(longrepr) == 3:
                entry.notes.add(str(longrepr[2]).removeprefix("Skipped: "))
        elif report.when == "call":
            status = "passed"
        else:
            return
        if _RANK[status] > _RANK.get(entry.status, 0):
            entry.status = status

    def add_all(self, reports: Iterable[Any]) -> None:
        for report in reports:
            self.add(report)

    @property
    def failed(self) -> list[str]:
        return sorted(n for n, c in self.clauses.items() if c.status == "FAILED")

    def optional_not_run(self) -> list[tuple[str, str]]:
        """``(clause, why)`` for clauses skipped because the provider lacks an optional member."""
        found = []
        for name, entry in self.clauses.items():
            if entry.status != "skipped":
                continue
            for note in sorted(entry.notes):
                if note.startswith(OPTIONAL_SKIP_PREFIX):
                    found.append((name, note.removeprefix(OPTIONAL_SKIP_PREFIX).strip()))
        return found

    def not_run(self) -> list[str]:
        """Contract clauses that no test reported on (a filtered run)."""
        return [n for n in CLAUSES if not (n in self.clauses and self.clauses[n].status)]

    def table(self, *, title: str = "dmem conformance", all_clauses: bool = True) -> str:
        """The clause table; with ``all_clauses`` the clauses no test reported on show too."""
        names = list(CLAUSES) if all_clauses else [n for n in CLAUSES if n in self.clauses]
        names += sorted(n for n in self.clauses if n not in CLAUSES)
        width = max((len(n) for n in names), default=10) + 2
        lines = [title, f"{'clause':<{width}}{'result':<9}detail", "-" * (width + 40)]
        counts: dict[str, int] = {}
        for name in names:
            entry = self.clauses.get(name)
            status = entry.status if entry and entry.status else "not run"
            counts[status] = counts.get(status, 0) + 1
            if entry is None:
                detail = CLAUSES.get(name, "")
            elif entry.failed:
                detail = "failed: " + ", ".join(sorted(entry.failed))
            elif entry.notes:
                detail = "; ".join(sorted(entry.notes))
            else:
                detail = CLAUSES.get(name, "")
            lines.append(f"{name:<{width}}{status:<9}{detail}")
        summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        lines.append("-" * (width + 40))
        lines.append(f"{len(names)} clauses: {summary}")
        return "\n".join(lines)
