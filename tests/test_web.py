"""`baton serve`: the routes, forms, token and masking, through Starlette's TestClient."""

from __future__ import annotations

import html
import importlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")

from starlette.testclient import TestClient

from baton.domain.replay import replay
from baton.readmodels.reading import refresh
from baton.runtime.service import load_goal_plan
from baton.store.eventstore import BatonStore, GoalNotFound, open_store
from baton.web.app import create_app
from scripts.bench_history import history_plan, insert_history, simulate
from tests.cli_support import baton
from tests.replay_agents import SECRET
from tests.web_goals import fill


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('web')}/b.db"
    store = open_store(url)
    fill(store)
    refresh(store)
    store.close()
    yield url


@pytest.fixture
def client(filled: str) -> Iterator[TestClient]:
    with TestClient(create_app(open_store(filled))) as client:
        yield client


def _statuses(html: str) -> dict[str, str]:
    """Task id -> status, as the graph draws them."""
    return dict(re.findall(r'data-task="([^"]+)" data-status="([^"]+)"', html))


def _form_key(html: str) -> str:
    found = re.search(r'name="form_key" value="([^"]+)"', html)
    assert found, "the page has no form"
    return found.group(1)


def test_goals_page_lists_goals_with_counts_and_filters(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    found = re.findall(r'data-status="(\w+)"><td><a href="/goals/(\w+)"', page.text)
    assert sorted(found) == sorted([("completed", "done"), ("failed", "broken"),
                                    ("waiting", "berlin"), ("waiting", "human"),
                                    ("completed", "secret")])
    assert "completed 2" in page.text and "failed 1" in page.text and "waiting 2" in page.text
    assert "read models current" in page.text
    waiting = client.get("/?status=waiting").text
    assert sorted(re.findall(r'<a href="/goals/(\w+)"', waiting)) == ["berlin", "human"]
    travel = client.get("/?plan=trip-booking").text
    assert sorted(re.findall(r'<a href="/goals/(\w+)"', travel)) == ["berlin", "done"]
    assert re.findall(r'<a href="/goals/(\w+)"', client.get("/?since=2999-01-01").text) == []
    assert len(re.findall(r'<a href="/goals/(\w+)"', client.get("/?since=2000-01-01").text)) == 5
    bad = client.get("/?since=yesterday")
    assert bad.status_code == 400
    assert "since: &#39;yesterday&#39; is not a date or time" in bad.text


def test_goal_page_shows_graph_timeline_and_decisions(client: TestClient) -> None:
    page = client.get("/goals/done").text
    assert _statuses(page) == {"search": "succeeded", "price": "succeeded",
                               "book": "succeeded", "notify": "succeeded"}
    assert page.count('class="bar bar-attempt bar-ok"') == 4
    assert "<code>validation.contract</code>" in page and "GoalCompleted" in page
    broken = client.get("/goals/broken").text
    assert _statuses(broken)["a"] == "failed" and _statuses(broken)["b"] == "skipped"
    assert broken.count("bar bar-attempt bar-error") == 2
    assert broken.count("bar bar-backoff") == 1
    human = client.get("/goals/human").text
    assert human.count("bar bar-human") == 1


@pytest.mark.parametrize("goal_id", ["done", "broken", "berlin", "human"])
def test_state_at_event_n_is_what_replay_at_n_says(filled: str, client: TestClient,
                                                   goal_id: str) -> None:
    store = open_store(filled)
    events = list(store.events(goal_id))
    contracts = load_goal_plan(store.get(goal_id)).contracts
    for n in range(1, len(events) + 1):
        page = client.get(f"/goals/{goal_id}?at={n}").text
        expected = replay(events, contracts, at=n).state
        assert _statuses(page) == {tid: t.status for tid, t in expected.tasks.items()}, n
        assert f'id="at-input" min="1" max="{len(events)}" value="{n}"' in page


def test_task_details_and_replay_verification(client: TestClient) -> None:
    page = client.get("/goals/broken?task=a").text
    assert 'id="task"' in page and "raised RuntimeError" in page
    assert "retry.backoff" in page and "on_failure.fail" in page
    ok = client.get("/goals/done/replay").text
    assert "re-decided identically" in ok


def test_secrets_never_appear(client: TestClient) -> None:
    pages = ["/", "/escalations", "/goals/secret", "/goals/secret/replay"]
    pages += [f"/goals/secret?task={t}" for t in ("login", "use")]
    pages += [f"/goals/secret?at={n}&task=use" for n in range(1, 11)]
    for url in pages:
        text = client.get(url).text
        assert SECRET not in text, url
    assert "**********" in client.get("/goals/secret?task=use").text


def _resolve(client: TestClient, **fields: str) -> Any:
    key = _form_key(client.get("/escalations").text)
    return client.post("/escalations/resolve", data={"form_key": key, **fields},
                       follow_redirects=False)


def test_resolve_form_checks_its_input(client: TestClient) -> None:
    page = client.get("/escalations").text
    assert sorted(re.findall(r'data-goal="(\w+)" data-task="(\w+)"', page)) == [
        ("berlin", "price"), ("human", "a")]
    cases = {
        "a reason is required": {"action": "retry", "reason": " "},
        "action must be one of retry, abandon, output, approve, reject, not 'explode'": {
            "action": "explode", "reason": "r"},
        "output is not valid JSON: Expecting property name enclosed in double quotes at line 1": {
            "action": "output", "output": "{nope", "reason": "r"},
        "--output does not satisfy Text": {"action": "output", "output": '{"txt": 1}',
                                           "reason": "r"},
    }
    for message, fields in cases.items():
        answer = _resolve(client, goal="human", task="a", **fields)
        assert answer.status_code == 400
        error = re.search(r'<p class="error" id="error">([^<]*)</p>', answer.text)
        assert error and message in html.unescape(error.group(1)), (message, error)
        assert "\n" not in error.group(1)
    wrong_task = _resolve(client, goal="human", task="b", action="retry", reason="r")
    assert "task &#39;b&#39; is pending, not escalated" in wrong_task.text
    stale = client.post("/escalations/resolve", data={"form_key": "old", "goal": "human",
                                                      "task": "a", "action": "retry",
                                                      "reason": "r"})
    assert stale.status_code == 400 and "the form is out of date" in stale.text


def _wait_for(store: BatonStore, goal_id: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while store.get(goal_id).state.status != status:
        assert time.monotonic() < deadline, store.get(goal_id).state.status
        time.sleep(0.05)


def test_resolving_from_the_page_moves_the_goal_on(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/b.db")
    from tests.support import run
    from tests.web_goals import escalating_plan

    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    refresh(store)
    with TestClient(create_app(store)) as client:
        answer = _resolve(client, goal="human", task="a", action="output",
                          output='{"text": "by hand"}', reason="fixed by hand", by="ana",
                          resume="1")
        assert answer.status_code == 303
        _wait_for(store, "human", "completed")
        assert store.get("human").state.output == {"b": {"text": "BY HAND"}}
        page = client.get(answer.headers["location"]).text
        assert "human a: output recorded" in page and "Nothing waits for a human" in page
        assert "ana: fixed by hand" in client.get("/goals/human?task=a").text


def test_cancel_form(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/b.db")
    from tests.support import run
    from tests.web_goals import escalating_plan

    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    with TestClient(create_app(store)) as client:
        key = _form_key(client.get("/goals/human").text)
        empty = client.post("/goals/human/cancel", data={"form_key": key, "reason": ""})
        assert "cancel: a reason is required" in empty.text
        done = client.post("/goals/human/cancel", data={"form_key": key, "reason": "dup"})
        assert store.get("human").state.status == "cancelled"
        assert 'id="goal-status">cancelled' in done.text
        again = client.post("/goals/human/cancel",
                            data={"form_key": key, "reason": "dup", "back": "escalations"})
        assert again.status_code == 400
        assert "human: cancel: goal human has already ended (cancelled)" in again.text


def test_cancel_from_the_escalations_page(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/b.db")
    from tests.support import run
    from tests.web_goals import escalating_plan

    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    refresh(store)
    with TestClient(create_app(store)) as client:
        page = client.get("/escalations").text
        assert 'action="/goals/human/cancel"' in page
        done = client.post("/goals/human/cancel", data={
            "form_key": _form_key(page), "reason": "duplicate", "back": "escalations"})
        assert "human: cancelled" in done.text and "Nothing waits for a human" in done.text
        assert store.get("human").state.status == "cancelled"


def test_token_is_required_when_set(filled: str) -> None:
    with TestClient(create_app(open_store(filled), token="s3cret")) as client:
        assert client.get("/").status_code == 401
        assert client.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/?token=wrong").status_code == 401
        assert client.get("/?token=s3cret").status_code == 200
        assert client.get("/goals/done").status_code == 200  # the cookie it set


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    result = baton("serve", "--host", "0.0.0.0", store=f"sqlite:///{tmp_path}/b.db",
                   env={"BATON_WEB_TOKEN": ""})
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "baton: error: --host 0.0.0.0 is not loopback: set --token or BATON_WEB_TOKEN so that "
        "only people holding it can see and resolve goals"]


def test_a_10000_event_goal_is_paged(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/b.db")
    loaded = history_plan(2500, 1)
    events = simulate(loaded, "big", failures=0)
    assert len(events) >= 10_000
    insert_history(store, events)
    with TestClient(create_app(store)) as client:
        started = time.perf_counter()
        page = client.get("/goals/big")
        took = time.perf_counter() - started
        assert page.status_code == 200
        assert page.text.count("<tr class") <= 100 + 1
        assert re.search(r"page (\d+) of (\d+)", page.text)
        assert page.text.count("bar bar-attempt") == 50  # tasks page 1 of 50
        assert "tasks page 1 of 50" in page.text
        started = time.perf_counter()
        middle = client.get("/goals/big?at=5000&page=3").text
        again = time.perf_counter() - started
        assert "page 3 of" in middle
    print(f"10,000-event goal page: {took:.2f}s first, {again:.2f}s for a step")


def test_event_cache_tops_up_with_what_was_stored_since(tmp_path: Path) -> None:
    from baton.runtime.service import resolve_task
    from baton.web.events import EventCache
    from tests.support import run
    from tests.web_goals import escalating_plan

    store = open_store(f"sqlite:///{tmp_path}/b.db")
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    cache = EventCache(store, goals=1)
    before = cache.events("human")
    resolve_task(store, "human", "a", action="output", reason="r", by="b",
                 output={"text": "ok"})
    after = cache.events("human")
    fresh = list(store.events("human"))
    assert len(after) > len(before)
    assert [(e.originator_version, type(e).__name__) for e in after] == [
        (e.originator_version, type(e).__name__) for e in fresh]
    with pytest.raises(GoalNotFound):
        cache.events("nope")


def test_replay_verification_shows_the_first_divergence(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide = importlib.import_module("baton.domain.decide")  # the module, not the function
    monkeypatch.setattr(decide, "backoff_delay", lambda policy, *, failures, jitter: 42.0)
    page = client.get("/goals/broken/replay").text
    assert '<p class="error" id="replay-result">diverged at event 5</p>' in page
    assert '"delay_s": 42.0' in html.unescape(page)
    assert 'href="/goals/broken?at=5"' in page


def test_pages_on_each_store(store_url: str) -> None:
    """The routes that read the store directly (head, version, events) on SQLite and PostgreSQL."""
    from tests.support import run
    from tests.web_goals import escalating_plan

    store = open_store(store_url)
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    with TestClient(create_app(store)) as client:
        assert client.get("/goals/human/version").json() == {
            "version": len(store.events("human"))}
        assert client.get("/head").json()["head"] >= len(store.events("human"))
        assert _statuses(client.get("/goals/human").text) == {"a": "escalated", "b": "pending"}
        assert 'data-goal="human" data-task="a"' in client.get("/escalations").text
        assert 'data-status="waiting"><td><a href="/goals/human"' in client.get("/").text
