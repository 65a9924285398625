"""``dmem conformance URL``: the suite's subcommand of the ``dmem`` command.

A dmem plugin (entry point ``conformance`` in group ``dmem``) that registers the
command through the ``dmem_register_commands`` hook, so the core never imports the
suite. ``dmem.open`` loads every plugin of that group, so this module imports nothing
heavy: pytest and Hypothesis load only when the command runs (or, for the profile
names, when the command line is built).
"""

from __future__ import annotations

import sys

import click
from dmem import hookimpl, redact_url

__all__ = ["dmem_register_commands"]


@hookimpl
def dmem_register_commands(cli: click.Group) -> None:
    from ._profiles import DEFAULT_PROFILE, PROFILE_NAMES

    @cli.command(context_settings={"ignore_unknown_options": True})
    @click.argument("url")
    @click.option(
        "--profile",
        default=DEFAULT_PROFILE,
        show_default=True,
        type=click.Choice(PROFILE_NAMES),
        help="Hypothesis profile.",
    )
    @click.option(
        "--unreachable",
        metavar="URL2",
        default=None,
        help="A URL of the same backend that is down (e.g. a closed port), for the "
        "down-backend clauses; default: the twin the URL's plugin gives, if any.",
    )
    @click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
    def conformance(
        url: str, profile: str, unreachable: str | None, pytest_args: tuple[str, ...]
    ) -> None:
        """Run the conformance suite against URL and print a clause-by-clause table.

        PYTEST_ARGS go to pytest as they are (e.g. -k expiry, -x); a run narrowed by
        them says it is partial.
        """
        if _private_memory(url):
            click.echo(
                f"error: {redact_url(url)} opens a new, private, empty store every time it "
                "is opened, and the suite opens the URL more than once and expects every "
                "opening to reach the same data (shared connections, namespaces), so those "
                "clauses would fail. Name the store: memory://NAME is shared by every "
                "opening in this process, e.g. 'dmem conformance memory://conformance'",
                err=True,
            )
            sys.exit(2)
        from .runner import main as run_suite

        sys.exit(run_suite(url, profile, list(pytest_args), unreachable))


def _private_memory(url: str) -> bool:
    """True for ``memory://`` without a NAME (with or without ``?options``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "memory":
        return False
    return not rest.partition("?")[0].strip("/")
