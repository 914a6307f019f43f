"""Baton's imperative shell: stores, agent loading, the runner, the CLI."""

__all__: list[str] = []
