"""Baton: a thin, deterministic, event-sourced orchestrator for multi-agent LLM systems.

The public surface is this module's `__all__` (docs/reference.md, "Python API"); everything
else is private by name. In the repository this package is the `adapters/` folder; `domain/`
and `projections/` are mounted inside it as `baton.domain` and `baton.projections`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("baton")  # one place: pyproject.toml's [project].version
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
