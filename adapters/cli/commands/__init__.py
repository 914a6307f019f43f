"""The CLI's commands, one module per concern; each exposes `register(subparsers)`."""

from __future__ import annotations

from baton.cli.commands import debug, goals, human, observe, plans, views, workers

__all__ = ["COMMANDS"]

COMMANDS = [plans.register, goals.register, views.register, human.register, debug.register,
            workers.register, observe.register]
