"""`baton serve`: the routes, forms, token and masking, through Starlette's TestClient."""

from __future__ import annotations

import html
import importlib
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")

from starlette.testclient import TestClient

from baton import projections
from baton.domain.replay import replay
from baton.readmodels import reading
from baton.readmodels.reading import ReadModels, refresh
from baton.runtime.service import cancel_goal, load_goal_plan
from baton.store.eventstore import BatonStore, GoalNotFound, open_store
from baton.web import app as web
from baton.web.app import create_app
from scripts.bench_history import history_plan, insert_history, simulate
from tests.cli_support import baton
from tests.replay_agents import SECRET
from tests.support import projected, run
from tests.web_goals import escalating_plan, failing_plan, fill, run_at, upper_plan


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
    # a dispatch that holds its readiness (decision rules 3) says why the task was ready
    assert "ready: backoff elapsed at " in broken and "(retry.backoff_elapsed); attempt 2" in broken
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
        "output: not valid JSON: Expecting property name enclosed in double quotes at line 1": {
            "action": "output", "output": "{nope", "reason": "r"},
        "the output given does not satisfy Text": {"action": "output", "output": '{"txt": 1}',
                                           "reason": "r"},
        "output: not valid JSON: duplicate key 'text'": {
            "action": "output", "output": '{"text": "a", "text": "b"}', "reason": "r"},
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
        assert client.get("/?token=s3cr%C3%A9t").status_code == 401  # not ASCII: was a 500
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
    loaded = history_plan(3334, 1)  # 3 events per task
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
        assert page.text.count("bar bar-attempt") == 50  # tasks page 1 of 67
        assert "tasks page 1 of 67" in page.text
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
    # Started, TaskDispatched a, AgentRaised a, then the RetryScheduled that differs
    assert '<p class="error" id="replay-result">diverged at event 4</p>' in page
    assert '"delay_s": 42.0' in html.unescape(page)
    assert 'href="/goals/broken?at=4"' in page


def test_pages_on_each_store(store_url: str) -> None:
    """The routes that read the store directly (head, version, events) on SQLite and PostgreSQL."""
    store = open_store(store_url)
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    refresh(store)  # as `baton run` does; a page never catches up (see the tests below)
    with TestClient(create_app(store)) as client:
        assert client.get("/goals/human/version").json() == {
            "version": len(store.events("human"))}
        assert client.get("/head").json()["head"] >= len(store.events("human"))
        assert _statuses(client.get("/goals/human").text) == {"a": "escalated", "b": "pending"}
        assert 'data-goal="human" data-task="a"' in client.get("/escalations").text
        assert 'data-status="waiting"><td><a href="/goals/human"' in client.get("/").text


# --- the goal list and the escalations, read in SQL, on both stores ---------------------------

T0 = datetime(2021, 3, 1, 12, 0, tzinfo=UTC)  # before any cancel (its time is the clock's)


def _listed(page: str) -> list[tuple[str, str]]:
    """(goal id, status) of each row the goal list shows, top to bottom."""
    return [(goal, status) for status, goal in
            re.findall(r'data-status="(\w+)"><td><a href="/goals/([^"]+)"', page)]


def _pager(page: str) -> tuple[int, int, int] | None:
    """(page, pages, goals matching) from the pager; None when everything fits one page."""
    found = re.search(r'class="pager">page (\d+) of (\d+) \((\d+) goals\)', page)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def _counts(page: str) -> tuple[int, dict[str, int]]:
    line = re.search(r'id="counts">(\d+) goals:(.*?)·', page, re.S)
    assert line, page
    return int(line[1]), {name: int(n) for name, n in re.findall(r">(\w+) (\d+)</a>", line[2])}


def _plan_options(page: str) -> list[str]:
    select = re.search(r'<select name="plan">(.*?)</select>', page, re.S)
    assert select
    return re.findall(r"<option (?:selected)?>([^<]+)</option>", select[1])


def _as_before(rows: list[dict[str, Any]], status: str | None, plan: str | None,
               since: datetime | None) -> list[tuple[str, str]]:
    """What the page showed before its filters moved into SQL: every row filtered in Python,
    newest first, ties by goal id (times compared as instants)."""
    chosen = [r for r in rows if (status is None or r["status"] == status)
              and (plan is None or r["plan"] == plan)
              and (since is None or r["updated_at"] >= since)]
    chosen.sort(key=lambda r: r["goal_id"])
    chosen.sort(key=lambda r: r["updated_at"], reverse=True)
    return [(r["goal_id"], r["status"]) for r in chosen]


def test_goal_list_filters_counts_and_pages_as_before(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 goals, 3 a page: each filter and page shows what filtering every row in Python
    showed, and the counts and plans are those of all goals."""
    monkeypatch.setattr(web, "GOALS_PER_PAGE", 3)
    plans = [upper_plan("alpha"), upper_plan("beta"), failing_plan(), escalating_plan()]
    for index in range(16):  # two goals at each time: their ids decide their order
        run_at(store, plans[index % 4], f"g{index * 7 % 16:02d}",
               T0 + timedelta(minutes=10 * (index // 2)))
    cancel_goal(store, "g05", reason="duplicate", by="ana")  # escalating: waiting, then ended
    refresh(store)
    rows = projected(store, ReadModels.goals)
    assert {r["status"] for r in rows} == {"completed", "failed", "waiting", "cancelled"}
    with TestClient(create_app(store, catch_up_s=0)) as client:
        first = client.get("/").text
        # cancelled last, so newest; then the two goals of 13:10, in the order of their ids
        assert _listed(first) == [("g05", "cancelled"), ("g02", "failed"), ("g09", "waiting")]
        assert _pager(first) == (1, 6, 16)
        assert _counts(first) == (16, {"cancelled": 1, "completed": 8, "failed": 4,
                                       "waiting": 3})
        assert _plan_options(first) == ["alpha", "beta", "escalating", "failing"]
        since = "2021-03-01T13:35:00+01:00"  # 12:35 UTC: the goals of 12:40 and later
        for status in (None, "completed", "failed", "waiting", "cancelled", "nope"):
            for plan in (None, "alpha", "failing"):
                for since_text in (None, since):
                    when = None if since_text is None else datetime.fromisoformat(since_text)
                    expected = _as_before(rows, status, plan, when)
                    pages = max(1, -(-len(expected) // 3))
                    params = {k: v for k, v in (("status", status), ("plan", plan),
                                                ("since", since_text)) if v}
                    for number in range(0, pages + 2):  # 0 and past the end: the first, last
                        page = client.get("/", params={**params, "page": str(number)}).text
                        shown = min(max(number, 1), pages)
                        where = (status, plan, since_text, number)
                        assert _listed(page) == expected[(shown - 1) * 3: shown * 3], where
                        assert _pager(page) == (
                            None if pages == 1 else (shown, pages, len(expected))), where
                        assert _counts(page) == _counts(first), where
        failed = client.get("/?status=failed&page=2").text
        assert _listed(failed) == [("g14", "failed")] and _pager(failed) == (2, 2, 4)
        alpha = client.get("/", params={"plan": "alpha", "since": since}).text
        assert _listed(alpha) == [("g04", "completed"), ("g08", "completed")]


def test_since_compares_instants_across_time_zones(store: BatonStore) -> None:
    """Goals whose events carry other offsets than UTC (a runner's clock, or eventsourcing's
    TZINFO_TOPIC): `since` compares the instants, whatever offset each side is written in."""
    east = timezone(timedelta(hours=2))
    west = timezone(timedelta(hours=-5))
    india = timezone(timedelta(hours=5, minutes=30))
    run_at(store, upper_plan("p"), "east", datetime(2026, 3, 2, 1, 30, tzinfo=east))  # 23:30Z
    run_at(store, upper_plan("p"), "west", datetime(2026, 3, 1, 20, 0, tzinfo=west))  # 01:00Z
    run_at(store, upper_plan("p"), "utc", datetime(2026, 3, 2, 0, 30, 0, 250_000, tzinfo=UTC))
    run_at(store, upper_plan("p"), "india",  # 2026-03-02T00:30:00.5Z
           datetime(2026, 3, 2, 6, 0, 0, 500_000, tzinfo=india))
    refresh(store)
    with TestClient(create_app(store, catch_up_s=0)) as client:

        def since(text: str) -> list[str]:
            page = client.get("/", params={"since": text})
            assert page.status_code == 200, page.text
            return sorted(goal for goal, _ in _listed(page.text))

        assert since("2026-03-01") == ["east", "india", "utc", "west"]
        newest_first = [goal for goal, _ in _listed(client.get("/").text)]
        assert newest_first == ["west", "india", "utc", "east"]  # by instant, not by text
        # midnight UTC: east's text reads 2026-03-02 but it is 23:30 on the 1st; west's text
        # reads the 1st but it is 01:00 on the 2nd
        assert since("2026-03-02") == ["india", "utc", "west"]
        assert since("2026-03-02T00:00:00Z") == ["india", "utc", "west"]
        assert since("2026-03-02T02:00+02:00") == ["india", "utc", "west"]
        assert since("2026-03-01T18:30-05:00") == ["east", "india", "utc", "west"]  # at 23:30Z
        assert since("2026-03-01T23:30:00.000001") == ["india", "utc", "west"]
        assert since("2026-03-02T00:30:00.25Z") == ["india", "utc", "west"]  # at: included
        assert since("2026-03-02T00:30:00.250001Z") == ["india", "west"]
        assert since("2026-03-02T06:00:00.5+05:30") == ["india", "west"]
        assert since("2026-03-02T06:00:00.500001+05:30") == ["west"]
        assert since("2026-03-02T01:00Z") == ["west"]
        assert since("2026-03-01T20:00:00.000001-05:00") == []


def test_escalations_page_shows_the_longest_waiting_and_how_many_wait(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for minute, goal_id in ((2, "c"), (0, "a"), (1, "b"), (3, "ended")):
        run_at(store, escalating_plan(), goal_id, T0 + timedelta(minutes=minute))
    cancel_goal(store, "ended", reason="r", by="ana")
    run_at(store, upper_plan("p"), "done", T0)
    refresh(store)
    with TestClient(create_app(store, catch_up_s=0)) as client:
        monkeypatch.setattr(web, "ESCALATIONS_SHOWN", 2)
        page = client.get("/escalations").text
        assert re.findall(r'class="escalation" data-goal="(\w+)"', page) == ["a", "b"]
        assert "showing the 2 longest waiting of 3" in page
        monkeypatch.setattr(web, "ESCALATIONS_SHOWN", 3)
        page = client.get("/escalations").text
        assert re.findall(r'class="escalation" data-goal="(\w+)"', page) == ["a", "b", "c"]
        assert ">3 waiting ·" in page
    every = projected(store, ReadModels.escalations)  # `baton escalations`: all of them
    assert [row["goal_id"] for row in every] == ["a", "b", "c"]
    shown = projected(store, lambda models: models.longest_waiting(2))
    assert ([row["goal_id"] for row in shown.rows], shown.waiting) == (["a", "b"], 3)


def test_a_page_never_catches_up_it_says_how_far_behind(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")  # the library: no catch-up
    lag = projected(store, ReadModels.state).lag
    assert lag > 3
    with TestClient(create_app(store, catch_up_s=0)) as client:
        page = client.get("/").text
        assert _listed(page) == []
        assert (f"{lag} events behind the log: shown as of event 0; "
                "<code>baton projections follow</code> catches them up") in page
        assert 'data-poll="/views" data-version="0"' in page  # reloads once they move
        assert "Nothing waits for a human" in client.get("/escalations").text
        monkeypatch.setattr(reading, "LAG_COUNTED", 3)  # counted no further than this
        assert "3+ events behind the log" in client.get("/").text
        assert projected(store, ReadModels.state).lag == lag  # the requests applied nothing
        assert client.get("/views").json() == {"version": 0}
        # A form that wrote catches up only when that is little work (here: no more than 3)
        monkeypatch.setattr(web, "_FORM_CATCH_UP", 3)
        key = _form_key(client.get("/goals/human").text)
        cancelled = client.post("/goals/human/cancel", data={
            "form_key": key, "reason": "duplicate", "back": "escalations"}).text
        assert "human: cancelled" in cancelled and "events behind the log" in cancelled
        assert projected(store, ReadModels.state).lag > lag
        refresh(store)  # `baton projections follow`, a worker or a writing command
        head = projected(store, ReadModels.state).head
        assert client.get("/views").json() == {"version": head}
        page = client.get("/").text
        assert _listed(page) == [("human", "cancelled")] and "read models current" in page
        assert "data-poll" not in page


def test_pages_read_through_one_pool_opened_once(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page, a poll of /views or a form reads the read models through the pool the server
    opened on its first read, not a pool (PostgreSQL: new sessions) opened per request."""
    opened: list[int] = []
    open_views = projections.open_views

    def counted(*args: Any, **kwargs: Any) -> Any:
        opened.append(1)
        return open_views(*args, **kwargs)

    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    refresh(store)
    monkeypatch.setattr(projections, "open_views", counted)
    with TestClient(create_app(store, catch_up_s=0)) as client:
        for _ in range(3):
            assert _listed(client.get("/").text) == [("human", "waiting")]
            assert 'data-goal="human"' in client.get("/escalations").text
            assert client.get("/views").json()["version"] > 0
        key = _form_key(client.get("/goals/human").text)
        client.post("/goals/human/cancel", data={"form_key": key, "reason": "duplicate"})
        assert _listed(client.get("/").text) == [("human", "cancelled")]
    assert len(opened) == 1


def test_a_store_that_is_down_gets_a_page_that_says_so_and_the_server_recovers(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventsourcing.persistence import OperationalError

    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    refresh(store)
    open_views = projections.open_views

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection refused: is the server running?")

    monkeypatch.setattr(projections, "open_views", down)
    with TestClient(create_app(store, catch_up_s=0), raise_server_exceptions=False) as client:
        for path in ("/", "/escalations", "/views"):
            page = client.get(path)
            assert page.status_code == 503, (path, page.status_code)
            assert "Store unavailable" in page.text and "connection refused" in page.text
        logged = capsys.readouterr().err.strip().splitlines()
        assert len(logged) == 3 and all("connection refused" in line for line in logged)
        assert logged[0].startswith("baton serve: GET /: store ")
        monkeypatch.setattr(projections, "open_views", open_views)  # the server is back
        assert _listed(client.get("/").text) == [("human", "waiting")]


@pytest.mark.postgres
def test_pages_outlive_sessions_the_database_cut(postgres_url: str) -> None:
    """The pool the pages read through lives as long as the server: sessions the database
    cut (a failover, an administrator) are replaced before use, not served as errors."""
    import psycopg

    from tests.conftest import PG_URL
    from tests.test_chaos import wait_for

    name = f"baton-web-{uuid.uuid4().hex[:8]}"
    store = open_store(f"{postgres_url}&application_name={name}")
    try:
        run(store, escalating_plan(), {"text": "x"}, goal_id="human")
        refresh(store)
        with TestClient(create_app(store, catch_up_s=0)) as client, \
                psycopg.connect(PG_URL, autocommit=True) as admin:
            assert _listed(client.get("/").text) == [("human", "waiting")]
            sessions = [pid for pid, in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,))]
            cut = [pid for pid in sessions
                   if admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]]
            assert cut, "no session of the store to cut"
            # The cut ones, not every session of the name: a pool may still be adding one it
            # began before the cut (psycopg_pool grows in the background), which stays.
            wait_for(lambda: not admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (cut,)
            ).fetchall(), "the cut sessions to end")
            for _ in range(3):
                assert _listed(client.get("/").text) == [("human", "waiting")]
                assert 'data-goal="human"' in client.get("/escalations").text
    finally:
        store.close()


def test_the_server_catches_up_in_a_thread_of_its_own(store: BatonStore) -> None:
    with TestClient(create_app(store)) as client:
        run(store, escalating_plan(), {"text": "x"}, goal_id="human")  # while it serves
        head = projected(store, ReadModels.state).head
        client.get("/")  # finds them behind: wakes the thread, does not wait for it
        deadline = time.monotonic() + 30
        while client.get("/views").json()["version"] != head:
            assert time.monotonic() < deadline, "the server did not catch up"
            time.sleep(0.02)
        page = client.get("/").text
        assert _listed(page) == [("human", "waiting")] and "read models current" in page
        assert 'data-goal="human"' in client.get("/escalations").text
