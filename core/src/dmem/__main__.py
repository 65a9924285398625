"""``python -m dmem`` runs the ``dmem`` command."""

from __future__ import annotations

from .cli import main

main()
