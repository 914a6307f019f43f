"""Developer scripts (benchmarks); a package so plans can name `scripts.bench_agents:fn`."""

__all__: list[str] = []
