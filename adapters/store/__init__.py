"""The event store: eventsourcing's SQLite and PostgreSQL persistence, opened from a URL."""

__all__: list[str] = []
