"""Running goals: loading plans and agents, calling agents, the runner loop, the service."""

__all__: list[str] = []
