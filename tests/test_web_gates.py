"""The web view's gate forms, through Starlette's TestClient on both stores: a goal page shows
a task's question with an answer form and a task waiting for approval with its input and
approve / reject buttons; the forms record what `baton answer` / `resolve` record, under the
same form-key and token rules as the other forms."""

from __future__ import annotations

import html
import re
import threading

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")

from starlette.testclient import TestClient

from baton.readmodels.reading import refresh
from baton.runtime.service import resume_goal
from baton.store.eventstore import BatonStore
from baton.web.app import create_app
from tests import gate_agents
from tests.support import run
from tests.test_gates import gated_plan
from tests.web_goals import form_key, gated_store  # noqa: F401 (gated_store: the `store` fixture)


def _kinds(store: BatonStore) -> list[str]:
    return [type(event).__name__ for event in store.events("g")]


def test_a_question_and_an_approval_are_decided_from_the_goal_page(store: BatonStore) -> None:
    run(store, gated_plan(), {"question": "sales"}, goal_id="g")
    with TestClient(create_app(store)) as client:
        page = html.unescape(client.get("/goals/g").text)
        assert 'class="answer" data-task="ask"' in page
        assert "which period does 'sales' mean?" in page
        key = form_key(page)

        empty = client.post("/goals/g/answer", data={"form_key": key, "task": "ask",
                                                     "answer": " ", "back": "goal"})
        assert "an+answer+is+required" in str(empty.url) or "an answer is required" in empty.text
        assert "HumanAnswered" not in _kinds(store)

        answered = client.post("/goals/g/answer", data={
            "form_key": key, "task": "ask", "answer": "Q3", "by": "ann", "back": "goal"})
        assert answered.status_code == 200 and "answer recorded" in answered.text
        [event] = [e for e in store.events("g") if type(e).__name__ == "HumanAnswered"]
        assert (event.answer, event.by) == ("Q3", "ann")

        resume_goal(store, "g")
        page = html.unescape(client.get("/goals/g").text)
        assert 'class="approval" data-task="publish"' in page
        assert '"text": "draft on sales during Q3"' in page
        approved = client.post("/escalations/resolve", data={
            "form_key": key, "goal": "g", "task": "publish", "action": "approve",
            "reason": "looks right", "by": "bob", "back": "goal"})
        assert approved.status_code == 200 and "approve recorded" in approved.text
    assert resume_goal(store, "g").state.status == "completed"
    assert gate_agents.PUBLISHED == ["draft on sales during Q3"]


def test_the_escalations_page_offers_only_what_fits_the_gate(store: BatonStore) -> None:
    run(store, gated_plan(), {"question": "sales"}, goal_id="g")
    refresh(store)  # as `baton run` does: the page reads the read models, never catches up
    with TestClient(create_app(store)) as client:
        page = client.get("/escalations").text
        assert "clarification" in page
        assert "<option>retry</option>" not in page  # a question is answered, not retried
        refused = client.post("/escalations/resolve", data={
            "form_key": form_key(page), "goal": "g", "task": "ask", "action": "approve",
            "reason": "r"})
        assert refused.status_code == 400
        assert "waits for clarification: answer it" in html.unescape(refused.text)
    assert "HumanResolved" not in _kinds(store)


def test_a_question_is_answered_from_the_escalations_page(store: BatonStore) -> None:
    run(store, gated_plan(), {"question": "sales"}, goal_id="g")
    refresh(store)
    with TestClient(create_app(store)) as client:
        page = html.unescape(client.get("/escalations").text)
        assert "question: which period does 'sales' mean?" in page
        # The answer form, and the fields the browser submits with it (form="answer-1").
        form = re.search(r'<form method="post" action="([^"]+)" id="(answer-\d+)" '
                         r'class="answer" data-goal="g" data-task="ask">(.*?)</form>', page, re.S)
        assert form is not None
        action, form_id, hidden = form.groups()
        assert action == "/goals/g/answer"
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', hidden))
        assert fields == {"form_key": form_key(page), "back": "escalations", "task": "ask"}
        own = re.findall(rf'name="(\w+)"[^>]*form="{form_id}"', page)
        assert own == ["answer", "by", "resume"]
        answered = client.post(action, data={**fields, "answer": "Q3", "by": "ann",
                                             "resume": "1"})
        assert answered.status_code == 200
        assert "/escalations?done=g+ask%3A+answer+recorded&sig=" in str(answered.url)
        assert '<p class="done" id="done">g ask: answer recorded</p>' in answered.text
    [event] = [e for e in store.events("g") if type(e).__name__ == "HumanAnswered"]
    assert (event.task, event.answer, event.by) == ("ask", "Q3", "ann")
    # Resumed in the background; the app, stopping, had it leave at a save and waited for it
    # (the store closes next): resumed again, it reaches the approval gate.
    assert not [t for t in threading.enumerate() if t.name == "baton-web-resume-g"]
    state = resume_goal(store, "g").state
    assert (state.status, state.tasks["publish"].status) == ("waiting", "escalated")


def test_the_gate_forms_need_the_form_key_and_the_token(store: BatonStore) -> None:
    run(store, gated_plan(), {"question": "sales"}, goal_id="g")
    with TestClient(create_app(store, token="s3cret")) as client:
        denied = client.post("/goals/g/answer", data={"task": "ask", "answer": "x"})
        assert denied.status_code == 401
        page = client.get("/goals/g?token=s3cret").text  # sets the cookie
        stale = client.post("/goals/g/answer", data={
            "form_key": "not-the-key", "task": "ask", "answer": "x", "back": "goal"})
        assert "out of date" in html.unescape(stale.text) or "out+of+date" in str(stale.url)
        assert "HumanAnswered" not in _kinds(store)
        ok = client.post("/goals/g/answer", data={
            "form_key": form_key(page), "task": "ask", "answer": "x", "back": "goal"})
        assert ok.status_code == 200
    assert "HumanAnswered" in _kinds(store)
