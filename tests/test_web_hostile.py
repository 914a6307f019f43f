"""The web view under input a careless or hostile user sends: each gets a 4xx page with one line
that says what is wrong, never a 500, and nothing recorded is lost; through Starlette's
TestClient on both stores."""

from __future__ import annotations

import html
import re
import threading

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")

from starlette.testclient import TestClient

from baton.readmodels.reading import ReadModels, refresh
from baton.runtime.service import resume_goal
from baton.store.eventstore import BatonStore, open_store
from baton.web.app import create_app, goal_url
from tests.support import events_of, projected, run
from tests.test_gates import gated_plan
from tests.web_goals import escalating_plan, form_key, gated_store  # noqa: F401 (gated_store: the `store` fixture)


def _error(page: str) -> str:
    found = re.search(r'<p class="error" id="error">([^<]*)</p>', page)
    assert found, page[:300]
    return html.unescape(found.group(1))


def _listed(page: str) -> list[tuple[str, str]]:
    return [(goal, status) for status, goal in
            re.findall(r'data-status="(\w+)"><td><a href="/goals/([^"]+)"', page)]


def test_a_nul_in_what_a_human_types_never_stops_the_read_models(store: BatonStore) -> None:
    """PostgreSQL's text and jsonb cannot hold NUL: a reason or an answer holding one is
    recorded as typed, and the read models (the goal list, the escalations) still catch up,
    showing U+FFFD in its place; a NUL in a goal id or a filter finds nothing."""
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    run(store, gated_plan(), {"question": "sales"}, goal_id="g")
    refresh(store)
    with TestClient(create_app(store, catch_up_s=0)) as client:
        key = form_key(client.get("/escalations").text)
        cancelled = client.post("/goals/human/cancel", data={
            "form_key": key, "reason": "dup\x00licate", "back": "escalations"})
        assert cancelled.status_code == 200 and "human: cancelled" in cancelled.text
        [request] = events_of(store, "human", "CancelRequested")
        assert request.reason == "dup\x00licate"  # the event keeps what was typed

        answered = client.post("/goals/g/answer", data={
            "form_key": key, "task": "ask", "answer": "Q\x003", "back": "goal"})
        assert "g ask: answer recorded" in answered.text
        resume_goal(store, "g")  # the draft carries the NUL into the approval's input
        refresh(store)
        assert projected(store, ReadModels.state).lag == 0
        page = client.get("/").text
        assert "read models current" in page
        assert sorted(_listed(page)) == [("g", "waiting"), ("human", "cancelled")]
        escalations = html.unescape(client.get("/escalations").text)
        assert 'data-goal="g" data-task="publish"' in escalations
        assert "sales during Q" in escalations

        for path in ("/goals/%00", "/goals/%00/replay", "/goals/a%00b/version"):
            assert client.get(path).status_code == 404, path
        assert _listed(client.get("/?plan=%00").text) == []
        assert _listed(client.get("/?status=%00").text) == []
        refused = client.post("/escalations/resolve", data={
            "form_key": key, "goal": "\x00", "task": "a", "action": "retry", "reason": "r"})
        assert refused.status_code == 400 and "no goal '\\x00'" in _error(refused.text)


def test_an_output_nested_too_deeply_or_not_storable_is_refused_in_one_line(
    store: BatonStore,
) -> None:
    """The output form reads JSON as `resolve --output` does: nesting deeper than Python's
    parser goes, or than the store holds, and NaN are a 400 that says so, and nothing is
    recorded (they were a 500, or a decision recorded with a value the CLI refuses)."""
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    refresh(store)
    before = len(store.events("human"))
    with TestClient(create_app(store, catch_up_s=0)) as client:
        key = form_key(client.get("/escalations").text)
        cases = {
            '{"text": "x", "y": ' + "[" * 100_000 + "]" * 100_000 + "}": "nested too deeply",
            '{"text": "x", "y": ' + "[" * 150 + "]" * 150 + "}":
                "cannot be stored: at y",
            '{"text": NaN}': "cannot be stored: at text: nan is not a finite number",
        }
        for output, message in cases.items():
            refused = client.post("/escalations/resolve", data={
                "form_key": key, "goal": "human", "task": "a", "action": "output",
                "output": output, "reason": "r"})
            assert refused.status_code == 400, message
            assert f"human a: output: {message}" in _error(refused.text)
    assert len(store.events("human")) == before
    assert store.get("human").state.tasks["a"].status == "escalated"


def test_unknown_pages_and_bad_query_parameters_get_a_page_that_says_why(
    store: BatonStore,
) -> None:
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    refresh(store)
    total = len(store.events("human"))
    with TestClient(create_app(store, catch_up_s=0)) as client:

        def refused(path: str, status: int, message: str, method: str = "GET") -> None:
            page = client.request(method, path)
            assert page.status_code == status, path
            assert page.headers["content-type"].startswith("text/html"), path
            assert _error(page.text) == message, path

        refused("/nope", 404, "no page /nope")
        refused("/static/nope.js", 404, "no page /static/nope.js")
        refused("/goals/nope", 404, "no goal 'nope'")
        refused("/goals/nope/replay", 404, "no goal 'nope'")
        assert client.get("/goals/nope/version").status_code == 404
        refused("/goals/human/cancel", 405, "/goals/human/cancel does not take GET")
        refused("/escalations/resolve", 405, "/escalations/resolve does not take GET")
        assert client.get("/escalations/resolve").headers["allow"] == "POST"
        refused("/goals/human?at=abc", 400, "at: 'abc' is not a whole number")
        refused("/goals/human?at=1e3", 400, "at: '1e3' is not a whole number")
        refused("/goals/human?page=last", 400, "page: 'last' is not a whole number")
        refused("/goals/human?tasks_page=1.5", 400, "tasks_page: '1.5' is not a whole number")
        refused("/?page=two", 400, "page: 'two' is not a whole number")
        # a number past either end shows the nearest event, as the step arrows do
        for at, shown in (("0", 1), ("-4", 1), (str(total + 50), total)):
            page = client.get(f"/goals/human?at={at}")
            assert page.status_code == 200
            assert f'id="at-input" min="1" max="{total}" value="{shown}"' in page.text
        # an unknown task: the goal's page still, saying there is no such task
        unknown = client.get("/goals/human?task=zzz&at=2")
        assert unknown.status_code == 404 and 'id="goal-status"' in unknown.text
        assert _error(unknown.text) == "no task 'zzz' at event 2 of this goal"
        assert 'id="task"' in client.get("/goals/human?task=a").text


def test_a_decision_saved_while_another_process_writes_to_the_goal_is_still_recorded(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the form's read of the goal and its save, a worker or another person saves to
    the same goal: the version conflict re-runs the command on the goal as it now stands (as
    the runner does), not a 500 that records nothing."""
    from baton.runtime.service import resolve_task

    store, other = open_store(store_url), open_store(store_url)
    try:
        run(store, escalating_plan(), {"text": "x"}, goal_id="human")
        run(store, escalating_plan(), {"text": "x"}, goal_id="other")
        refresh(store)
        read = store.get
        written: list[str] = []

        def read_then_someone_writes(goal_id: str) -> object:
            goal = read(goal_id)
            if not written:  # once: bob resolves it through another connection
                written.append(goal_id)
                resolve_task(other, goal_id, "a", action="retry", reason="again", by="bob")
            return goal

        monkeypatch.setattr(store, "get", read_then_someone_writes)
        with TestClient(create_app(store, catch_up_s=0)) as client:
            key = form_key(client.get("/escalations").text)
            cancelled = client.post("/goals/human/cancel", data={
                "form_key": key, "reason": "duplicate", "by": "ana"})
            assert cancelled.status_code == 200 and 'id="goal-status">cancelled' in cancelled.text
            written.clear()
            resolved = client.post("/escalations/resolve", data={
                "form_key": key, "goal": "other", "task": "a", "action": "abandon",
                "reason": "give up", "by": "ana"})
            # bob's retry came first: the task is no longer escalated, and the form says so
            assert resolved.status_code == 400
            assert "task 'a' is ready, not escalated" in _error(resolved.text)
        assert [(e.by, e.reason) for e in events_of(store, "human", "HumanResolved")] == [
            ("bob", "again")]
        assert store.get("human").state.status == "cancelled"
        assert [e.by for e in events_of(store, "other", "HumanResolved")] == ["bob"]
    finally:
        other.close()
        store.close()


def test_a_file_sent_for_a_text_field_is_no_text(store: BatonStore) -> None:
    """A crafted multipart post with a file under `reason` or `answer`: refused as missing, not
    recorded as the file object's description ("UploadFile(filename=...)")."""
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    run(store, gated_plan(), {"question": "sales"}, goal_id="g")
    refresh(store)
    file = ("why.txt", b"because", "text/plain")
    with TestClient(create_app(store, catch_up_s=0)) as client:
        key = form_key(client.get("/escalations").text)
        resolved = client.post("/escalations/resolve", data={
            "form_key": key, "goal": "human", "task": "a", "action": "retry"},
            files={"reason": file})
        assert resolved.status_code == 400
        assert _error(resolved.text).startswith("human a: a reason is required")
        cancelled = client.post("/goals/human/cancel", data={
            "form_key": key, "back": "escalations"}, files={"reason": file})
        assert cancelled.status_code == 400
        assert _error(cancelled.text).startswith("human: cancel: a reason is required")
        answered = client.post("/goals/g/answer", data={
            "form_key": key, "task": "ask", "back": "escalations"}, files={"answer": file})
        assert answered.status_code == 400
        assert _error(answered.text) == "g ask: an answer is required"
    assert store.get("human").state.status == "waiting"
    assert not events_of(store, "human", "HumanResolved")
    assert not events_of(store, "g", "HumanAnswered")


def test_a_second_resume_of_a_goal_waits_for_the_first(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two decisions on one goal, each with "resume now": the second resume waits for the
    first, instead of running beside it (finding the goal owned, it left the second decision
    undriven)."""
    import threading

    from baton.web import app as web
    from tests.support import plan, task

    store = open_store(f"sqlite:///{tmp_path}/b.db")
    both = plan(*(task(name, "always_fails", input={"text": "$goal.text"},
                       retry={"max_attempts": 1}, on_failure="escalate") for name in "ac"),
                name="two-escalations")
    run(store, both, {"text": "x"}, goal_id="two")
    refresh(store)
    running: list[str] = []
    overlapped: list[bool] = []
    second_started = threading.Event()

    def resume(store: BatonStore, goal_id: str, **_: object) -> None:
        overlapped.append(bool(running))
        running.append(goal_id)
        if len(overlapped) == 1:
            second_started.wait(1)  # a second one beside it would start meanwhile
        else:
            second_started.set()
        running.remove(goal_id)

    monkeypatch.setattr(web, "resume_goal", resume)
    with TestClient(create_app(store, catch_up_s=0)) as client:
        key = form_key(client.get("/escalations").text)
        for name in "ac":
            decided = client.post("/escalations/resolve", data={
                "form_key": key, "goal": "two", "task": name, "action": "abandon",
                "reason": "not needed", "resume": "1"})
            assert decided.status_code == 200, _error(decided.text)
    # the app, stopping, waited for its resumes
    assert overlapped == [False, False]
    store.close()


def test_text_from_agents_and_humans_is_shown_never_run(store: BatonStore) -> None:
    """Markup in a goal id, a question, an answer, a reason or a filter is escaped on every
    page (the graph and the timeline are drawn on the server too)."""
    hostile = "<script>alert(1)</script>"
    attribute = '"><img src=x onerror=alert(2)>'
    goal_id = f"g{hostile}{attribute}"
    run(store, gated_plan(), {"question": hostile + attribute}, goal_id=goal_id)
    run(store, escalating_plan(), {"text": hostile}, goal_id="human")
    refresh(store)
    with TestClient(create_app(store, catch_up_s=0)) as client:
        key = form_key(client.get("/escalations").text)
        client.post("/escalations/resolve", data={
            "form_key": key, "goal": "human", "task": "a", "action": "output",
            "output": '{"text": "' + hostile + '"}', "reason": attribute, "by": hostile})
        client.post(goal_url(goal_id, "answer"),
                    data={"form_key": key, "task": "ask", "answer": hostile + attribute})
        refresh(store)
        pages = ["/", "/escalations", f"/?plan={attribute}", f"/?status={hostile}",
                 "/goals/human", "/goals/human?task=a", "/goals/human/replay",
                 goal_url(goal_id), goal_url(goal_id) + "?task=ask",
                 goal_url(goal_id, "replay"), f"/goals/human?error={hostile}",
                 f"/escalations?done={attribute}", f"/nope{hostile}"]
        for path in pages:
            text = client.get(path).text
            assert "<script>alert" not in text and "<img src=x" not in text, path
        assert "HumanAnswered" in [type(e).__name__ for e in store.events(goal_id)]


def test_a_form_posted_empty_or_not_as_a_form_says_so(store: BatonStore) -> None:
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    with TestClient(create_app(store, catch_up_s=0)) as client:
        for sent in ({}, {"json": {"goal": "human"}}, {"content": b"--x\r\nbroken",
                     "headers": {"content-type": "multipart/form-data; boundary=x"}}):
            page = client.post("/escalations/resolve", **sent)  # type: ignore[arg-type]
            assert page.status_code == 400
            assert _error(page.text) == "the form is out of date (reload the page)"
        key = form_key(client.get("/goals/human").text)
        nameless = client.post("/escalations/resolve", data={
            "form_key": key, "action": "retry", "reason": "r"})
        assert _error(nameless.text) == "no goal '' in this store"
        too_big = client.post("/goals/human/cancel", files={"reason": (None, "x" * 2_000_000)},
                              data={"form_key": key})
        assert too_big.status_code == 400 and "exceeded maximum size" in _error(too_big.text)
    assert store.get("human").state.status == "waiting"


def test_a_form_refused_on_the_goal_page_is_a_400_that_keeps_the_page_working(
    store: BatonStore,
) -> None:
    """The goal page's forms, refused (no answer, no reason, a stale key, a decision that no
    longer applies): the goal's page again with a 400 and the one line, its links and step
    control pointing at the goal's page (it is shown at the form's URL); nothing recorded.
    Before, a redirect carried the line in `?error=`, which any link could set as well."""
    goal_id = "trip #1/x"
    run(store, gated_plan(), {"question": "sales"}, goal_id=goal_id)
    before = len(store.events(goal_id))
    with TestClient(create_app(store, catch_up_s=0)) as client:
        key = form_key(client.get(goal_url(goal_id)).text)
        cases = [
            (goal_url(goal_id, "answer"), {"task": "ask", "answer": " ", "back": "goal"},
             "an answer is required"),
            (goal_url(goal_id, "answer"), {"task": "ask", "answer": "Q3", "back": "goal",
                                           "form_key": "stale"},
             "the form is out of date (reload the page)"),
            (goal_url(goal_id, "answer"), {"task": "ask", "answer": "Q3", "back": "goal",
                                           "form_key": "é"},  # not ASCII: was a 500
             "the form is out of date (reload the page)"),
            ("/escalations/resolve", {"goal": goal_id, "task": "publish", "action": "approve",
                                      "reason": "ok", "back": "goal"},
             f"goal {goal_id}: task 'publish' is pending, not escalated"),
            (goal_url(goal_id, "cancel"), {"reason": " "},
             "cancel: a reason is required (why, for the audit trail), not ''"),
        ]
        for path, fields, message in cases:
            page = client.post(path, data={"form_key": key, **fields}, follow_redirects=False)
            assert page.status_code == 400, message
            assert _error(page.text) == message
            here = html.escape(goal_url(goal_id))
            assert f'<form method="get" class="step" id="step" action="{here}">' in page.text
            assert f'href="{here}?at=' in page.text
        assert "spoofed" not in client.get(goal_url(goal_id) + "?error=spoofed").text
        assert "spoofed" not in client.get("/escalations?error=spoofed").text
    assert len(store.events(goal_id)) == before


def test_the_line_saying_what_was_recorded_comes_only_from_the_server(store: BatonStore) -> None:
    """After a decision the page says what was recorded; a link cannot make it say anything
    else (the line's signature is the server's), and a changed line or signature shows none."""
    goal_id = "trip #1/x"
    run(store, gated_plan(), {"question": "sales"}, goal_id=goal_id)
    with TestClient(create_app(store, catch_up_s=0)) as client:
        key = form_key(client.get(goal_url(goal_id)).text)
        answered = client.post(goal_url(goal_id, "answer"), data={
            "form_key": key, "task": "ask", "answer": "Q3", "back": "goal"})
        assert answered.status_code == 200
        assert _done(answered.text) == f"{goal_id} ask: answer recorded"
        signed = str(answered.url)
        forged = signed.replace("answer+recorded", "refund+approved")
        for path in (forged, signed.replace("sig=", "sig=0"), signed.split("&sig=")[0],
                     signed.split("&sig=")[0] + "&sig=%C3%A9",  # not ASCII: was a 500
                     goal_url(goal_id) + "?done=all+approved",
                     "/escalations?done=all+approved"):
            page = client.get(path)
            assert page.status_code == 200 and 'id="done"' not in page.text, path
        assert _done(client.get(signed).text) == f"{goal_id} ask: answer recorded"


def _done(page: str) -> str:
    found = re.search(r'<p class="done" id="done">([^<]*)</p>', page)
    assert found, page[:300]
    return html.unescape(found.group(1))


def test_a_since_beyond_the_calendar_in_utc_and_a_huge_id_get_one_short_line(
    store: BatonStore,
) -> None:
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    refresh(store)
    with TestClient(create_app(store, catch_up_s=0)) as client:
        for since in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00+01:00"):
            page = client.get("/", params={"since": since})
            assert page.status_code == 400, since  # a 500 on SQLite
            assert _error(page.text) == (f"since: {since!r} is out of range (years 1 to 9999 "
                                         "in UTC)")
        assert _listed(client.get("/", params={"since": "9999-12-31T23:59:59+01:00"}).text) == []
        long = client.get(goal_url("x" * 20_000))
        assert long.status_code == 404 and len(_error(long.text)) <= 300


def test_a_decision_submitted_twice_is_recorded_once(store: BatonStore) -> None:
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    refresh(store)
    with TestClient(create_app(store, catch_up_s=0)) as client:
        form = {"form_key": form_key(client.get("/escalations").text), "goal": "human",
                "task": "a", "action": "output", "output": '{"text": "by hand"}',
                "reason": "fixed", "by": "ana"}
        first = client.post("/escalations/resolve", data=form)
        assert first.status_code == 200 and "human a: output recorded" in first.text
        again = client.post("/escalations/resolve", data=form)
        assert again.status_code == 400
        assert _error(again.text).startswith("human a: goal human: task 'a' is ")
        assert _error(again.text).endswith(", not escalated")
    assert len(events_of(store, "human", "HumanResolved")) == 1


def test_the_server_stopping_wakes_a_resume_waiting_for_its_agent(
    store: BatonStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """A goal resumed from a form whose (safe) agent call hangs: the server's shutdown wakes
    its runner, which leaves at once rather than after the call or SHUTDOWN_WAIT_S."""
    from tests import agents
    from tests.support import plan, task

    agents.CALLS.clear()
    agents.BLOCKED.clear()
    agents.RELEASE.clear()
    data = plan(task("a", "fails_then_blocks", input={"text": "$goal.text"},
                     on_failure="escalate", retry={"max_attempts": 1}), output="$a.text")
    run(store, data, {"text": "x"}, goal_id="hang")
    refresh(store)
    try:
        with TestClient(create_app(store, catch_up_s=0)) as client:
            key = form_key(client.get("/escalations").text)
            decided = client.post("/escalations/resolve", data={
                "form_key": key, "goal": "hang", "task": "a", "action": "retry",
                "reason": "again", "resume": "1"})
            assert decided.status_code == 200, _error(decided.text)
            assert agents.BLOCKED.wait(60), "the resumed goal never called its agent"
        # The app has stopped and joined its resume: it left with the call still hanging.
        assert not agents.RELEASE.is_set()
        assert not [t for t in threading.enumerate() if t.name == "baton-web-resume-hang"]
        assert "still resuming" not in capsys.readouterr().err
    finally:
        agents.RELEASE.set()
    state = store.get("hang").state
    assert (state.status, state.tasks["a"].status, state.tasks["a"].attempts) == (
        "running", "running", 2)  # the next owner takes it up by the crash rules
