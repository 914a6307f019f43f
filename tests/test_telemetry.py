"""OpenTelemetry from the log: the span tree of a goal, `baton trace`, live export."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from baton.history.runfile import import_run, read_run
from baton.runtime.runner import Runner
from baton.runtime.service import start_goal
from baton.store.eventstore import open_store
from baton.telemetry.export import export_spans, to_sdk_spans
from baton.telemetry.live import LiveTelemetry
from baton.telemetry.spans import SpanProjector, goal_spans
from tests import telemetry_agents
from tests.cli_support import baton
from tests.support import load, plan, task

GOLDEN = Path(__file__).parent / "golden"


def _exported(goal_id: str, events: list[Any]) -> list[Any]:
    exporter = InMemorySpanExporter()
    export_spans(exporter, to_sdk_spans(goal_id, goal_spans(events)))
    return list(exporter.get_finished_spans())


def _tree(spans: list[Any]) -> list[tuple[str, str | None]]:
    """(name, parent name) of each span, in start order."""
    names = {span.context.span_id: span.name for span in spans}
    return [(span.name, names.get(span.parent.span_id) if span.parent else None)
            for span in spans]


def test_travel_goal_span_tree() -> None:
    run = read_run(GOLDEN / "travel.jsonl")
    spans = _exported(run.goal_id, run.events)
    assert _tree(spans) == [
        ("goal trip-booking", None),
        ("task search", "goal trip-booking"),
        ("invoke_agent search", "task search"),
        ("task price", "goal trip-booking"),
        ("invoke_agent price", "task price"),
        ("task book", "goal trip-booking"),
        ("invoke_agent book", "task book"),
        ("task notify", "goal trip-booking"),
        ("invoke_agent notify", "task notify"),
    ]
    assert len({span.context.trace_id for span in spans}) == 1
    by_name = {span.name: span for span in spans}
    goal = by_name["goal trip-booking"]
    assert goal.status.status_code.name == "OK"
    assert goal.attributes["baton.status"] == "completed"
    assert goal.attributes["baton.rule"] == "goal.completed"
    assert [e.name for e in goal.events] == ["GoalCompleted"]

    price = by_name["invoke_agent price"]
    assert dict(price.attributes) | {"baton.idempotency_key": "k"} == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "price",
        "baton.task": "price",
        "baton.attempt": 1,
        "baton.side_effects": "none",
        "baton.idempotency_key": "k",
        "baton.duration_ms": price.attributes["baton.duration_ms"],
        "baton.usage.tokens": 360,
        "baton.usage.cost_usd": 0.00072,
        "baton.rule": "validation.contract",
        "baton.reason": "output satisfies PriceOut; confidence 0.79 >= 0.7",
    }
    assert [e.name for e in price.events] == ["TaskDispatched", "OutputAccepted"]
    assert price.events[0].attributes["baton.rule"] == "dag.dispatch"
    assert price.status.status_code.name == "OK"
    # times are the events' own: dispatched at event 7, returned at event 8
    times = {e.originator_version: e.timestamp for e in run.events}
    assert price.start_time == int(times[7].timestamp() * 1e6) * 1000
    assert price.end_time == int(times[8].timestamp() * 1e6) * 1000
    book = by_name["task book"]
    assert book.attributes["baton.side_effects"] == "idempotent"
    assert book.attributes["gen_ai.agent.name"] == "book"
    assert book.attributes["baton.status"] == "succeeded"
    assert [e.name for e in book.events] == ["TaskReady"]


def test_failed_attempt_has_error_status_and_retry_event() -> None:
    run = read_run(GOLDEN / "retried.jsonl")
    spans = _exported(run.goal_id, run.events)
    attempts = [s for s in spans if s.name.startswith("invoke_agent") and
                s.attributes["baton.task"] == "a"]
    first, second = sorted(attempts, key=lambda s: s.attributes["baton.attempt"])
    assert first.status.status_code.name == "ERROR"
    assert first.status.description == "ConnectionError: upstream reset"
    assert first.attributes["error.type"] == "ConnectionError"
    assert first.attributes["baton.rule"] == "retry.backoff"
    assert [e.name for e in first.events] == ["TaskDispatched", "RetryScheduled"]
    assert second.status.status_code.name == "OK"
    assert second.parent.span_id == first.parent.span_id


def test_a_dispatch_holding_its_readiness_says_why_the_task_was_ready() -> None:
    run = read_run(GOLDEN / "retried-rules3.jsonl")  # decision rules 3: no TaskReady events
    spans = _exported(run.goal_id, run.events)
    attempts = sorted((s for s in spans if s.name.startswith("invoke_agent")
                       and s.attributes["baton.task"] == "a"),
                      key=lambda s: s.attributes["baton.attempt"])
    readiness = [
        (e.attributes["baton.ready.rule"], e.attributes["baton.ready.reason"].split(" at ")[0])
        for span in attempts for e in span.events if e.name == "TaskDispatched"
    ]
    assert readiness == [("dag.inputs_ready", "reads only the goal input"),
                         ("retry.backoff_elapsed", "backoff elapsed")]
    task_a = next(s for s in spans if s.name == "task a")
    assert task_a.attributes["baton.status"] == "succeeded" and task_a.end_time is not None


def test_imported_run_gives_the_same_trace(tmp_path: Path) -> None:
    run = read_run(GOLDEN / "travel.jsonl")
    store = open_store(f"sqlite:///{tmp_path}/b.db")
    import_run(store, run)
    again = _exported(run.goal_id, list(store.events(run.goal_id)))
    original = _exported(run.goal_id, run.events)
    key = [(s.name, s.context.span_id, s.parent and s.parent.span_id, s.start_time, s.end_time,
            dict(s.attributes)) for s in original]
    assert key == [(s.name, s.context.span_id, s.parent and s.parent.span_id, s.start_time,
                    s.end_time, dict(s.attributes)) for s in again]


def test_live_spans_equal_the_projection_and_agent_spans_nest(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/b.db")
    exporter = InMemorySpanExporter()
    telemetry_agents.AGENT_SPANS.clear()
    data = plan(task("a", "traced_upper", input={"text": "$goal.text"}),
                task("b", "traced_async_upper", input={"text": "$a.text"}))
    data["agents"] = {name: f"tests.telemetry_agents:{name}"
                      for name in ("traced_upper", "traced_async_upper")}
    loaded = load(data)
    telemetry = LiveTelemetry(store=store, processor=SimpleSpanProcessor(exporter))
    runner = Runner(store=store, loaded=loaded, run_observer=telemetry)
    goal = start_goal(store, loaded, {"text": "hi"}, goal_id="live", runner=runner)
    assert goal.state.status == "completed"
    live = {s.context.span_id: s for s in exporter.get_finished_spans()}
    projected = {s.context.span_id: s for s in _exported("live", list(store.events("live")))}
    assert live.keys() == projected.keys()
    for span_id, span in live.items():
        assert (span.name, span.start_time, span.end_time) == (
            projected[span_id].name, projected[span_id].start_time, projected[span_id].end_time)
    attempt_ids = {s.attributes["baton.task"]: s.context for s in live.values()
                   if s.name.startswith("invoke_agent")}
    own = {s.name: s for s in telemetry_agents.AGENT_SPANS.get_finished_spans()}
    assert own["http POST /upper"].parent.span_id == attempt_ids["a"].span_id
    assert own["http POST /async-upper"].parent.span_id == attempt_ids["b"].span_id
    assert own["http POST /upper"].context.trace_id == attempt_ids["a"].trace_id


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: decodes each protobuf POST and keeps the spans' names."""

    received: list[tuple[str, str]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.received.append(  # type: ignore[attr-defined]
                        (self.path, span.name))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Any]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _otlp_env(server: Any) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
            "OTEL_BSP_SCHEDULE_DELAY": "50"}


def test_trace_command_posts_spans_to_an_otlp_receiver(collector: Any) -> None:
    result = baton("trace", str(GOLDEN / "travel.jsonl"), env=_otlp_env(collector))
    assert result.code == 0, result.err
    assert "exported 9 spans of goal travel" in result.err
    assert {path for path, _ in collector.received} == {"/v1/traces"}
    assert sorted(name for _, name in collector.received) == sorted(
        ["goal trip-booking"] + [f"{kind} {t}" for t in ("search", "price", "book", "notify")
                                 for kind in ("task", "invoke_agent")])


def test_run_exports_live_when_otel_is_configured(collector: Any, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/b.db"
    result = baton("run", "examples/travel/plan.yaml", "--input", "@examples/travel/trip.json",
                   "--goal-id", "g1", store=store, env=_otlp_env(collector))
    assert result.code == 0, result.err
    live = sorted(name for _, name in collector.received)
    assert len(live) == 9
    collector.received.clear()
    assert baton("trace", "g1", store=store, env=_otlp_env(collector)).code == 0
    assert sorted(name for _, name in collector.received) == live


def test_spans_a_human_decision_closes_are_exported_live_by_the_command_that_recorded_it(
    collector: Any, tmp_path: Path
) -> None:
    """A goal waiting for a human, then cancelled from another process: the goal's span and
    its waiting task's (closed by the cancel) were exported by nobody, so a tracing backend
    showed the goal open for ever. Now `cancel` (as `resolve` and `answer`) exports them."""
    from tests.support import plan_file
    from tests.test_gates import gated_plan

    store, env = f"sqlite:///{tmp_path}/b.db", _otlp_env(collector)
    plan = plan_file(tmp_path, gated_plan())
    waiting = baton("run", plan, "--input", '{"question": "sales"}', "--goal-id", "g",
                    store=store, env=env)
    assert waiting.code == 3, waiting.err
    assert "goal gates" not in [name for _, name in collector.received]  # still open
    assert baton("cancel", "g", "--reason", "not needed", store=store, env=env).code == 0
    live = sorted(name for _, name in collector.received)
    collector.received.clear()
    assert baton("trace", "g", store=store, env=env).code == 0
    assert live == sorted(name for _, name in collector.received)
    assert "goal gates" in live and "task ask" in live


def test_trace_console_and_errors(tmp_path: Path) -> None:
    result = baton("trace", str(GOLDEN / "travel.jsonl"), "--console")
    assert result.code == 0, result.err
    assert result.out.count('"name": "invoke_agent') == 4
    bad = baton("trace", str(GOLDEN / "travel.jsonl"), env={"OTEL_TRACES_EXPORTER": "zipkin"})
    assert bad.code == 2
    assert bad.err.strip().splitlines() == [
        "baton: error: OTEL_TRACES_EXPORTER='zipkin' is not supported (otlp, console or none)"]
    missing = baton("trace", "nope", store=f"sqlite:///{tmp_path}/b.db", env={})
    assert missing.code == 2 and len(missing.err.strip().splitlines()) == 1


def test_a_collector_that_is_down_is_one_line_naming_it_and_why() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = baton("trace", str(GOLDEN / "travel.jsonl"),
                 env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                      "OTEL_EXPORTER_OTLP_TIMEOUT": "3"})  # time for one retry, at most two
    assert down.code == 2
    # Not the exporter's line per retry: Baton's line, quoting the cause.
    assert down.err.strip().splitlines() == [
        f"baton: error: the span exporter could not deliver 9 spans to "
        f"http://127.0.0.1:{port}/v1/traces ([Errno 111] Connection refused)"]


def test_a_run_whose_collector_is_down_says_so_in_one_line_and_completes(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ran = baton("run", "examples/travel/plan.yaml", "--input", "@examples/travel/trip.json",
                store=f"sqlite:///{tmp_path}/b.db",
                env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                     "OTEL_EXPORTER_OTLP_TIMEOUT": "2"})
    assert ran.code == 0, ran.err
    # Not the SDK's line per retry and per batch: one line of Baton's, quoting the cause.
    assert ran.err.strip().splitlines() == [
        f"baton: warning: live traces: the span exporter could not deliver spans to "
        f"http://127.0.0.1:{port}/v1/traces ([Errno 111] Connection refused); spans of this "
        "run are missing there"]


def test_genai_usage_attributes_when_the_split_is_recorded() -> None:
    """An LLM agent's usage carries input/output tokens and the model: they become the GenAI
    usage attributes of its attempt span."""
    from datetime import UTC, datetime, timedelta

    from baton.domain.decide import settle
    from baton.domain.goal import Goal
    from baton.domain.history import collect

    loaded = load(plan(task("a", "upper", input={"text": "$goal.text"})))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    goal = Goal.start(goal_id="llm", plan=loaded.plan, goal_input={"text": "x"},
                      concurrency=1, at=at)
    settle(goal, loaded.contracts)
    goal.observe("AgentReturned", at=at + timedelta(seconds=2), task="a", attempt=1,
                 output={"text": "X"}, duration_ms=2000.0,
                 usage={"tokens": 30, "cost_usd": 0.001, "input_tokens": 20,
                        "output_tokens": 10, "model": "test-2026-01", "request_model": "test"})
    settle(goal, loaded.contracts)
    spans = {s.name: s for s in _exported("llm", collect(goal))}
    attempt = spans["invoke_agent upper"]
    assert {k: attempt.attributes[k] for k in (
        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.request.model",
        "gen_ai.response.model", "baton.usage.tokens", "baton.usage.cost_usd")} == {
        "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 10,
        # the model asked for, and the one that answered (OpenTelemetry GenAI conventions)
        "gen_ai.request.model": "test", "gen_ai.response.model": "test-2026-01",
        "baton.usage.tokens": 30, "baton.usage.cost_usd": 0.001}
    assert attempt.end_time - attempt.start_time == 2_000_000_000


def test_a_bad_otel_setting_warns_once_and_the_run_goes_on(tmp_path: Path) -> None:
    result = baton("run", "examples/travel/plan.yaml", "--input", "@examples/travel/trip.json",
                   store=f"sqlite:///{tmp_path}/b.db",
                   env={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert result.code == 0
    assert result.err.strip().splitlines() == [
        "baton: warning: no live traces: OTLP protocol 'grpc' is not supported: Baton exports "
        "http/protobuf (set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)"]


def test_usage_naming_only_the_answering_model_claims_no_request_model() -> None:
    """Usage recorded before `request_model` (or by an agent that does not say it) names the
    model that answered: it is the response model, never passed off as the request's."""
    from datetime import UTC, datetime

    from baton.domain.decide import settle
    from baton.domain.goal import Goal
    from baton.domain.history import collect

    loaded = load(plan(task("a", "upper", input={"text": "$goal.text"})))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    goal = Goal.start(goal_id="old", plan=loaded.plan, goal_input={"text": "x"},
                      concurrency=1, at=at)
    settle(goal, loaded.contracts)
    goal.observe("AgentReturned", at=at, task="a", attempt=1, output={"text": "X"},
                 duration_ms=1.0, usage={"tokens": 30, "cost_usd": 0.0, "model": "gpt-4o-mini"})
    settle(goal, loaded.contracts)
    attempt = {s.name: s for s in _exported("old", collect(goal))}["invoke_agent upper"]
    assert attempt.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert "gen_ai.request.model" not in attempt.attributes


@pytest.mark.parametrize("golden", ["failed.jsonl", "failed-rules3.jsonl",
                                    "budgeted-rules5.jsonl"])
def test_a_failed_goal_ends_its_goal_span_with_error_status(golden: str) -> None:
    # GoalFailed names the failing task; it was filed under that task's span, so the goal
    # span stayed open ("running", `baton.open`) and a live export never sent it at all.
    run = read_run(GOLDEN / golden)
    spans = _exported(run.goal_id, run.events)
    goal = next(s for s in spans if s.parent is None)
    assert goal.attributes["baton.status"] == "failed"
    assert "baton.open" not in goal.attributes
    assert goal.status.status_code.name == "ERROR"
    assert goal.attributes["baton.rule"] == run.events[-1].rule  # on_failure.*, budget.*
    assert "GoalFailed" in [e.name for e in goal.events]
    assert goal.end_time == int(run.events[-1].timestamp.timestamp() * 1e6) * 1000
    projector = SpanProjector()
    projector.feed(run.events)
    assert goal.context.span_id in {s.span_id for s in projector.take_closed()}
