"""``@clause``: fixed ``examples=`` run first, under every profile, then the drawn ones."""

from __future__ import annotations

import pytest
from dmem_conformance._bridge import LoopBridge
from dmem_conformance._marks import clause
from dmem_conformance._profiles import PROFILE_NAMES, profile_settings
from hypothesis import strategies as st


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_fixed_examples_run_first_then_the_drawn_ones(profile: str) -> None:
    seen: list[int] = []

    class Suite:
        @clause(
            "patterns.match",
            given={"n": st.integers(100, 200)},
            examples=[{"n": 1}, {"n": 2}],
        )
        async def test_numbers(self, n: int) -> None:
            seen.append(n)

    with LoopBridge() as bridge:
        Suite().test_numbers(bridge, profile_settings(profile))
    assert seen[:2] == [1, 2]
    assert len(seen) > 2
    assert all(100 <= n <= 200 for n in seen[2:])


def test_examples_need_given() -> None:
    with pytest.raises(ValueError, match="examples= needs given="):
        clause("patterns.match", examples=[{"n": 1}])
