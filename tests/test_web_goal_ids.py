"""Goal ids are free-form text: every link, form and redirect of the web view carries any of
them (`#`, `?`, `/`, `%`, `&`, `<`, non-ASCII, an id that ends like one of a goal's pages),
through Starlette's TestClient on both stores."""

from __future__ import annotations

import html
import re

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")

from starlette.testclient import TestClient

from baton.readmodels.reading import refresh
from baton.runtime.service import resume_goal
from baton.store.eventstore import BatonStore, open_store
from baton.web.app import create_app, goal_url
from tests.support import kinds, run
from tests.test_gates import gated_plan
from tests.web_goals import gated_store  # noqa: F401 (the `store` fixture)

IDS = ["trip #1", "a?b", "x/y", "50%", "café", "a&b", "<b>", "x/replay", "a%2Fb", "1 + 1",
       "../up"]


def _heading(page: str) -> str:
    found = re.search(r"<h1>Goal (.*?) <span", page)
    assert found, page[:500]
    return html.unescape(found.group(1))


def _attr(page: str, pattern: str) -> str:
    found = re.search(pattern, page)
    assert found, pattern
    return html.unescape(found.group(1))


def _form_key(page: str) -> str:
    return _attr(page, r'name="form_key" value="([^"]+)"')


def test_every_link_and_form_works_for_any_goal_id(store: BatonStore) -> None:
    for goal_id in IDS:
        run(store, gated_plan(), {"question": "sales"}, goal_id=goal_id)
    refresh(store)
    with TestClient(create_app(store, catch_up_s=0)) as client:
        listed = client.get("/").text
        links = [html.unescape(href) for href in re.findall(r'<td><a href="([^"]+)"', listed)]
        assert sorted(links) == sorted(goal_url(goal_id) for goal_id in IDS)
        key = _form_key(client.get("/escalations").text)
        for goal_id in IDS:
            # the list's link opens the goal's page
            page = client.get(goal_url(goal_id))
            assert page.status_code == 200 and _heading(page.text) == goal_id

            # it polls its own version while it waits
            poll = _attr(page.text, r'data-poll="([^"]+)"')
            assert client.get(poll).json() == {"version": len(store.events(goal_id))}

            # verify by replay, and back to the goal from there
            replayed = client.get(_attr(page.text, r'href="([^"]+)" id="verify"')).text
            assert "re-decided identically" in replayed, goal_id
            back = _attr(replayed, r"<h1>Replay of <a href=\"([^\"]+)\"")
            assert _heading(client.get(back).text) == goal_id

            # the escalations page: its link to the task opens the goal at the task
            escalations = client.get("/escalations").text
            escalation = re.search(rf'data-goal="{re.escape(html.escape(goal_id))}" '
                                   r'data-task="ask">\s*<h2><a href="([^"]+)"', escalations)
            assert escalation, goal_id
            task_page = client.get(html.unescape(escalation.group(1))).text
            assert _heading(task_page) == goal_id and 'id="task"' in task_page

            # the goal page's answer form, then the approval form, then cancel
            action = _attr(page.text, r'<form method="post" action="([^"]+)" class="answer"')
            answered = client.post(action, data={"form_key": key, "task": "ask",
                                                 "answer": "Q3", "back": "goal"})
            assert answered.status_code == 200, goal_id
            assert _heading(answered.text) == goal_id
            assert f"{goal_id} ask: answer recorded" in html.unescape(answered.text)
            assert "HumanAnswered" in kinds(store, goal_id)

            resume_goal(store, goal_id)  # on to the approval gate
            page = client.get(goal_url(goal_id))
            approval = re.search(r'<form method="post" action="([^"]+)" class="approval"'
                                 r'.*?name="goal" value="([^"]*)"', page.text, re.S)
            assert approval, goal_id
            approved = client.post(html.unescape(approval.group(1)), data={
                "form_key": key, "goal": html.unescape(approval.group(2)), "task": "publish",
                "action": "approve", "reason": "fine", "back": "goal"})
            assert _heading(approved.text) == goal_id
            assert f"{goal_id} publish: approve recorded" in html.unescape(approved.text)

            cancel = _attr(approved.text, r'<form method="post" action="([^"]+)" class="inline"')
            cancelled = client.post(cancel, data={"form_key": key, "reason": "enough"})
            assert _heading(cancelled.text) == goal_id
            assert 'id="goal-status">cancelled' in cancelled.text
            assert store.get(goal_id).state.status == "cancelled"


def test_the_escalations_page_answers_and_cancels_any_goal_id(store: BatonStore) -> None:
    for goal_id in IDS:
        run(store, gated_plan(), {"question": "sales"}, goal_id=goal_id)
    refresh(store)
    with TestClient(create_app(store, catch_up_s=0)) as client:
        for goal_id in IDS:
            page = client.get("/escalations").text
            shown = re.escape(html.escape(goal_id))
            answer = re.search(rf'action="([^"]+)" id="answer-\d+" class="answer" '
                               rf'data-goal="{shown}"', page)
            assert answer, goal_id
            answered = client.post(html.unescape(answer.group(1)), data={
                "form_key": _form_key(page), "task": "ask", "answer": "Q3",
                "back": "escalations"})
            assert f"{goal_id} ask: answer recorded" in html.unescape(answered.text)
            assert "HumanAnswered" in kinds(store, goal_id)
            cancel = re.search(rf'action="([^"]+)" class="cancel" data-goal="{shown}"', page)
            assert cancel, goal_id
            cancelled = client.post(html.unescape(cancel.group(1)), data={
                "form_key": _form_key(page), "reason": "enough", "back": "escalations"})
            assert f"{goal_id}: cancelled" in html.unescape(cancelled.text)
            assert store.get(goal_id).state.status == "cancelled"


def test_an_id_typed_with_a_bare_slash_still_opens(tmp_path: object) -> None:
    """A link the view makes encodes `/` as %2F; a path typed by hand with a bare `/` still
    reaches the goal, and its pages, unless the id's last part names one of them."""
    store = open_store(f"sqlite:///{tmp_path}/b.db")
    run(store, gated_plan(), {"question": "sales"}, goal_id="x/y")
    with TestClient(create_app(store, catch_up_s=0)) as client:
        assert _heading(client.get("/goals/x/y").text) == "x/y"
        assert "re-decided identically" in client.get("/goals/x/y/replay").text
        assert client.get("/goals/x%2Fy/version").json()["version"] > 0
        wrong = client.get("/goals/x%2Fy/cancel")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        assert client.post("/goals/x%2Fy").status_code == 405
        missing = client.get("/goals/x%2Fz")
        assert missing.status_code == 404 and "no goal &#39;x/z&#39;" in missing.text
    store.close()
