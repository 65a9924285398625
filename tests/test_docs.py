"""The project's copy of the contract stays in step with the shared original."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_docs_contract_matches_shared_contract() -> None:
    shared = ROOT.parent / "shared" / "CONTRACT.md"
    if not shared.exists():
        pytest.skip("no ../shared/CONTRACT.md beside this checkout")
    assert (ROOT / "docs" / "contract.md").read_text() == shared.read_text()
