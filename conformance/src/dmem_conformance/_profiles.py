"""Hypothesis profiles of the suite: ``ci`` (bounded, deterministic) and ``thorough``.

They are plain :class:`hypothesis.settings` objects handed to each suite test
at run time, not registered globally, so loading them never changes the
settings of a project's own Hypothesis tests (nor Hypothesis's built-in ``ci``).
Select one with ``pytest --dmem-profile=NAME`` or ``DMEM_HYPOTHESIS_PROFILE``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, Verbosity, settings

__all__ = ["DEFAULT_PROFILE", "PROFILE_NAMES", "profile_settings", "selected_profile"]

DEFAULT_PROFILE = "ci"
PROFILE_NAMES = ("ci", "thorough")
ENV_VAR = "DMEM_HYPOTHESIS_PROFILE"

# Examples cost round trips on network backends, so ``ci`` keeps counts small and
# fixed (derandomize: the same examples on every run, no example database).
_SPECS: dict[str, dict[str, object]] = {
    "ci": {
        "max_examples": 20,
        "stateful_step_count": 25,
        "derandomize": True,
        "database": None,
    },
    "thorough": {
        "max_examples": 300,
        "stateful_step_count": 60,
        "derandomize": False,
    },
}


def profile_settings(name: str, *, stateful: bool = False) -> settings:
    """A fresh settings object of profile ``name`` (``ci`` or ``thorough``).

    ``stateful``: for the state machine. Under ``ci`` it does not shrink a
    failure: replaying a run repeats its real ttl sleeps, so shrinking could
    take minutes on a network backend. The failing run is still printed step
    by step; rerun with ``thorough`` for a minimal one.
    """
    if name not in _SPECS:
        raise ValueError(
            f"unknown dmem Hypothesis profile {name!r}; choose from {', '.join(PROFILE_NAMES)}"
        )
    spec = _SPECS[name]
    return settings(
        max_examples=int(spec["max_examples"]),  # type: ignore[call-overload]
        stateful_step_count=int(spec["stateful_step_count"]),  # type: ignore[call-overload]
        derandomize=bool(spec["derandomize"]),
        # Backends answer over the network: a per-example deadline only measures the machine.
        deadline=None,
        phases=tuple(p for p in Phase if not (stateful and name == "ci" and p is Phase.shrink)),
        verbosity=Verbosity.normal,
        report_multiple_bugs=False,
        print_blob=name == "ci",
        suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large),
        **({"database": None} if "database" in spec else {}),  # type: ignore[arg-type]
    )


def selected_profile(option: str | None = None) -> str:
    """The profile chosen by ``--dmem-profile`` (``option``), else the environment, else ci."""
    name = option or os.environ.get(ENV_VAR) or DEFAULT_PROFILE
    if name not in _SPECS:
        raise ValueError(
            f"unknown dmem Hypothesis profile {name!r}; choose from {', '.join(PROFILE_NAMES)}"
        )
    return name
