"""Recorded histories outside the store: run files, and re-execution against recorded outputs."""

__all__: list[str] = []
