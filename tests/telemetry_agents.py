"""Agents that make OpenTelemetry spans of their own (as an HTTP client or LLM library would)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.agents import Text

# A provider of their own: the test reads what the agents recorded, and the process-wide
# provider stays untouched.
AGENT_SPANS = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(AGENT_SPANS))
_tracer = PROVIDER.get_tracer("tests.telemetry_agents")


def traced_upper(inp: Text) -> Text:
    with _tracer.start_as_current_span("http POST /upper"):
        return Text(text=inp.text.upper())


async def traced_async_upper(inp: Text) -> Text:
    with _tracer.start_as_current_span("http POST /async-upper"):
        return Text(text=inp.text.upper())
