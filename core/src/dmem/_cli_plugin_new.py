"""``dmem plugin new NAME``: write a complete, installable backend plugin package.

The templates are package data (``_plugin_template/*.tmpl``); ``{{placeholder}}`` marks
are replaced by the names derived from NAME (:func:`plugin_names`). The package written
installs and passes its own tests (the dmem conformance suite among them) as it is: its
provider keeps its data in a dict, ready to be replaced by a real backend.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import click

from ._cli_common import EXIT_USAGE, fail

__all__ = ["PluginNames", "plugin", "plugin_names", "render_plugin", "write_plugin"]

_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_MAX_NAME = 40
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_]+)\}\}")

# Schemes and entry point names dmem and its own plugins use: a second plugin claiming one
# would be ignored (the first by entry point name keeps a scheme), so they are refused.
RESERVED = frozenset(
    {
        "dmem",
        "memory",
        "sqlite",
        "postgresql",
        "postgres",
        "redis",
        "rediss",
        "unix",
        "chroma",
        "conformance",
        "builtins",
    }
)

# template file -> path in the package written; {{module}} in a path is replaced too.
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "workflow.yml.tmpl": ".github/workflows/test.yml",
    "__init__.py.tmpl": "src/{{module}}/__init__.py",
    "plugin.py.tmpl": "src/{{module}}/plugin.py",
    "provider.py.tmpl": "src/{{module}}/provider.py",
    "test_conformance.py.tmpl": "tests/test_conformance.py",
    "test_plugin.py.tmpl": "tests/test_plugin.py",
}
EMPTY_FILES = ("src/{{module}}/py.typed",)


@dataclass(frozen=True)
class PluginNames:
    """Every name of a plugin called ``name`` (``files``, ``my-kv``)."""

    name: str
    """The entry point name, also the provider's name and its URL scheme."""

    @property
    def dist(self) -> str:
        return f"dmem-{self.name}"

    @property
    def module(self) -> str:
        return "dmem_" + self.name.replace("-", "_")

    @property
    def scheme(self) -> str:
        return self.name

    @property
    def provider_class(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("-")) + "Provider"

    @property
    def env(self) -> str:
        return self.name.upper().replace("-", "_")

    def placeholders(self, dmem_range: str) -> dict[str, str]:
        return {
            "name": self.name,
            "dist": self.dist,
            "module": self.module,
            "scheme": self.scheme,
            "Class": self.provider_class,
            "ENV": self.env,
            "dmem_range": dmem_range,
        }


def plugin_names(name: str) -> PluginNames:
    """The names of plugin ``name``; ``ValueError`` saying what is allowed otherwise.

    ``dmem-files`` and ``dmem_files`` are taken as ``files``. Allowed: lower-case ASCII
    letters, digits and single hyphens, starting with a letter, at most 40 characters; the
    same text is then a distribution name, a URL scheme and (with ``-`` as ``_``) a module.
    """
    given = name
    for prefix in ("dmem-", "dmem_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if not _NAME.fullmatch(name) or len(name) > _MAX_NAME:
        raise ValueError(
            f"invalid plugin name {given!r}: use lower-case ASCII letters, digits and single "
            f"hyphens, starting with a letter, at most {_MAX_NAME} characters (e.g. files, "
            "my-kv); it becomes the URL scheme (files://), the distribution (dmem-files) "
            "and the module (dmem_files)"
        )
    if name in RESERVED:
        raise ValueError(
            f"invalid plugin name {given!r}: {name!r} is taken by dmem or one of its own "
            "plugins (a second plugin for the same scheme would be ignored); choose another"
        )
    return PluginNames(name)


def dmem_range(version: str) -> str:
    """The dependency range of a plugin written against dmem ``version``: this minor
    version on (0.x: up to the next minor, which may change the API; 1.x on: the major)."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        return ">=0.1"
    major, minor = int(match.group(1)), int(match.group(2))
    upper = f"{major}.{minor + 1}" if major == 0 else str(major + 1)
    return f">={major}.{minor},<{upper}"


def _dmem_version() -> str:
    try:
        return importlib.metadata.version("dmem")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "0.1.0"


def _fill(text: str, values: dict[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template {where}: unknown placeholder {match.group(0)}")
        return values[key]

    return _PLACEHOLDER.sub(one, text)


def render_plugin(names: PluginNames, dmem_version: str | None = None) -> dict[str, str]:
    """The package's files: relative path -> text."""
    values = names.placeholders(dmem_range(dmem_version or _dmem_version()))
    templates = resources.files("dmem") / "_plugin_template"
    files: dict[str, str] = {}
    for template, target in FILES.items():
        text = (templates / template).read_text(encoding="utf-8")
        files[_fill(target, values, template)] = _fill(text, values, template)
    for target in EMPTY_FILES:
        files[_fill(target, values, target)] = ""
    return files


def write_plugin(names: PluginNames, directory: Path) -> list[Path]:
    """Write the package into ``directory`` (which must not exist, or be an empty
    directory); ``FileExistsError`` otherwise. Returns the files written."""
    if directory.exists() and not (directory.is_dir() and not any(directory.iterdir())):
        raise FileExistsError(f"{directory} already exists and is not an empty directory")
    files = render_plugin(names)
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


@click.group()
def plugin() -> None:
    """Write dmem plugins."""


@plugin.command()
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the package (default: ./dmem-NAME). Must not exist, or be empty.",
)
def new(name: str, directory: Path | None) -> None:
    """Write a complete backend plugin package called dmem-NAME, serving NAME:// URLs.

    It installs and passes its tests (the dmem conformance suite among them) as it is: its
    provider keeps its data in a dict, each method saying what the contract asks of it.
    Replace the dict with your backend. NAME: lower-case letters, digits and hyphens.
    """
    try:
        names = plugin_names(name)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    target = directory if directory is not None else Path(names.dist)
    try:
        written = write_plugin(names, target)
    except FileExistsError as exc:
        fail(f"{exc}: refusing to overwrite it; choose another --dir", EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot write {target}: {exc}")
    click.echo(
        f"wrote {names.dist} in {target}/ ({len(written)} files): scheme {names.scheme}://, "
        f"module {names.module}, provider {names.provider_class}"
    )
    click.echo("next:")
    for line in (
        f"cd {target}",
        "python -m venv .venv && . .venv/bin/activate",
        "pip install -e '.[test]'",
        "pytest",
        f"dmem conformance {names.scheme}://check",
    ):
        click.echo(f"  {line}")
