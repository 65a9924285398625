"""``dmem plugin new NAME``: the package it writes installs, passes its tests and conforms.

The end-to-end test is the plugin author's path: generate a package, build its wheel, install
it into a fresh venv with only what its README names (``pip install 'dmem-NAME[test]'``;
dmem and dmem-conformance come from wheels built from this checkout, everything else from
the configured index), run its own tests with that venv's pytest, and see ``dmem plugins``
list it and ``dmem conformance NAME://...`` pass. The wheels of this checkout are built once
per session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from dmem._cli_plugin_new import dmem_range, plugin_names, render_plugin, write_plugin
from dmem.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
# dmem needs dmem-sqlite (the embedded default); dmem-conformance is the test extra.
CHECKOUT_DISTS = (ROOT, ROOT / "plugins" / "sqlite", ROOT / "conformance")
TIMEOUT = 600


def _run(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def _check(result: subprocess.CompletedProcess[str], what: str) -> str:
    assert result.returncode == 0, (
        f"{what} exited {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n"
        f"--- stderr\n{result.stderr[-4000:]}"
    )
    return result.stdout


def _build_wheel(project: Path, outdir: Path) -> None:
    _check(
        _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(project)]),
        f"python -m build {project}",
    )


@pytest.fixture(scope="session")
def checkout_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of dmem, dmem-sqlite and dmem-conformance built from this checkout."""
    wheels = tmp_path_factory.mktemp("wheels")
    for project in CHECKOUT_DISTS:
        _build_wheel(project, wheels)
    return wheels


def _venv_env(venv: Path) -> dict[str, str]:
    """The environment of a shell with ``venv`` activated, nothing of this one's Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


# --- names, templates, the command ------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "name", "module", "provider"),
    [
        ("files", "files", "dmem_files", "FilesProvider"),
        ("dmem-files", "files", "dmem_files", "FilesProvider"),
        ("my-kv2", "my-kv2", "dmem_my_kv2", "MyKv2Provider"),
    ],
)
def test_plugin_names(given: str, name: str, module: str, provider: str) -> None:
    names = plugin_names(given)
    assert (names.name, names.scheme, names.dist) == (name, name, f"dmem-{name}")
    assert (names.module, names.provider_class) == (module, provider)


@pytest.mark.parametrize(
    "bad", ["", "Files", "my_kv", "-kv", "kv-", "my--kv", "1kv", "k v", "kv.x", "é", "x" * 41]
)
def test_a_bad_name_says_what_is_allowed(bad: str) -> None:
    with pytest.raises(ValueError, match="lower-case ASCII letters, digits and single hyphens"):
        plugin_names(bad)


@pytest.mark.parametrize("taken", ["memory", "sqlite", "redis", "chroma", "conformance"])
def test_names_dmem_and_its_plugins_use_are_refused(taken: str) -> None:
    with pytest.raises(ValueError, match="taken by dmem"):
        plugin_names(taken)


def test_dependency_ranges_never_pin() -> None:
    assert dmem_range("0.1.0") == ">=0.1,<0.2"
    assert dmem_range("0.12.3rc1") == ">=0.12,<0.13"
    assert dmem_range("1.4.2") == ">=1.4,<2"


def test_every_placeholder_is_filled() -> None:
    files = render_plugin(plugin_names("my-kv"), "0.1.0")
    assert set(files) >= {
        "pyproject.toml",
        "README.md",
        ".github/workflows/test.yml",
        "src/dmem_my_kv/plugin.py",
        "src/dmem_my_kv/provider.py",
        "src/dmem_my_kv/py.typed",
        "tests/test_conformance.py",
    }
    for path, text in files.items():
        assert not re.search(r"\{\{[A-Za-z_]+\}\}", text), path
    pyproject = files["pyproject.toml"]
    assert 'dependencies = ["dmem>=0.1,<0.2"]' in pyproject
    assert '"dmem-conformance>=0.1,<0.2"' in pyproject
    assert 'my-kv = "dmem_my_kv.plugin"' in pyproject
    assert "==" not in pyproject
    # GitHub's own ${{ ... }} expressions are left alone.
    assert "${{ matrix.python-version }}" in files[".github/workflows/test.yml"]


def test_an_existing_directory_is_never_overwritten(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    runner = CliRunner()
    result = runner.invoke(cli, ["plugin", "new", "files", "--dir", str(taken)])
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.output
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    result = runner.invoke(cli, ["plugin", "new", "files", "--dir", str(a_file)])
    assert result.exit_code == 2
    # An empty directory (say, one just made for the project) is filled.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(write_plugin(plugin_names("files"), empty)) > 5


def test_the_command_writes_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["plugin", "new", "files"])
    assert result.exit_code == 0, result.output
    assert "scheme files://" in result.output and "pip install -e '.[test]'" in result.output
    assert (tmp_path / "dmem-files" / "src" / "dmem_files" / "provider.py").is_file()
    bad = CliRunner().invoke(cli, ["plugin", "new", "Bad_Name"])
    assert bad.exit_code == 2
    assert "invalid plugin name 'Bad_Name': use lower-case" in bad.output


def test_the_package_is_lint_and_type_clean(tmp_path: Path) -> None:
    """ruff (this project's rules) and mypy --strict, so authors start from clean code."""
    package = tmp_path / "dmem-tidy"
    write_plugin(plugin_names("tidy"), package)
    config = str(ROOT / "pyproject.toml")
    ruff = [sys.executable, "-m", "ruff"]
    _check(_run([*ruff, "check", "--config", config, str(package)]), "ruff check")
    _check(_run([*ruff, "format", "--check", "--config", config, str(package)]), "ruff format")
    _check(
        _run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--strict",
                "--no-incremental",
                "--explicit-package-bases",
                "src",
                "tests",
            ],
            cwd=package,
            env={**os.environ, "MYPYPATH": str(package / "src")},
        ),
        "mypy --strict",
    )


# --- the author's path, end to end -------------------------------------------------------------
def test_a_generated_plugin_installs_passes_its_tests_and_conforms(
    tmp_path: Path, checkout_wheels: Path
) -> None:
    package = tmp_path / "dmem-demo-kv"
    result = CliRunner().invoke(cli, ["plugin", "new", "demo-kv", "--dir", str(package)])
    assert result.exit_code == 0, result.output
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for wheel in checkout_wheels.iterdir():
        (wheels / wheel.name).symlink_to(wheel)
    _build_wheel(package, wheels)

    venv = tmp_path / "venv"
    _check(_run([sys.executable, "-m", "venv", str(venv)]), "python -m venv")
    env = _venv_env(venv)
    bin_ = venv / "bin"
    # The README's one install command, with the wheels as the place dmem comes from.
    _check(
        _run(
            [str(bin_ / "pip"), "install", "-q", "--find-links", str(wheels), "dmem-demo-kv[test]"],
            env=env,
        ),
        "pip install dmem-demo-kv[test]",
    )
    where = _check(
        _run(
            [
                str(bin_ / "python"),
                "-c",
                "import dmem, dmem_demo_kv; print(dmem.__file__, dmem_demo_kv.__file__)",
            ],
            cwd=tmp_path,
            env=env,
        ),
        "import",
    )
    assert where.count("site-packages") == 2, where

    # Its own tests, with its own pytest, against the installed package.
    out = _check(
        _run(
            [str(bin_ / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            cwd=package,
            env=env,
        ),
        "the generated package's pytest",
    )
    summary = out.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary, summary

    plugins = _check(_run([str(bin_ / "dmem"), "plugins"], cwd=tmp_path, env=env), "plugins")
    assert re.search(r"^demo-kv 0\.1\.0 \(dmem-demo-kv\)$", plugins, re.M), plugins
    assert "providers: demo-kv (kv: demo-kv)" in plugins

    conformance = _check(
        _run([str(bin_ / "dmem"), "conformance", "demo-kv://check"], cwd=tmp_path, env=env),
        "dmem conformance demo-kv://check",
    )
    assert re.search(r"^model\.state-machine +passed", conformance, re.M), conformance
    assert re.search(r"^\d+ clauses: \d+ passed", conformance, re.M), conformance
    assert "FAILED" not in conformance, conformance

    # The command of the installed wheel writes the same package: the templates ship in it.
    again = tmp_path / "again"
    _check(
        _run([str(bin_ / "dmem"), "plugin", "new", "demo-kv", "--dir", str(again)], env=env),
        "dmem plugin new (installed)",
    )
    assert _tree(again) == render_plugin(plugin_names("demo-kv"))


def _tree(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): path.read_text(encoding="utf-8")
        for path in directory.rglob("*")
        if path.is_file()
    }


def test_the_guide_explains_every_clause() -> None:
    """docs/plugin-authors.md section 9 has a row for every clause of the suite, no more."""
    from dmem_conformance import CLAUSES

    text = (ROOT / "docs" / "plugin-authors.md").read_text(encoding="utf-8")
    section = text.split("## 9. What each clause means", 1)[1]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([a-z-]+\.[a-z-]+)`", row)}
    assert named == set(CLAUSES), (
        f"missing: {sorted(set(CLAUSES) - named)}, unknown: {sorted(named - set(CLAUSES))}"
    )
