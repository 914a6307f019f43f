"""The research example's human gates, on both stores: an ambiguous question ("recent …") makes
the planner ask which period is meant, the answer reaches its next attempt, and the unsafe
publish waits for a human's approval with the report it would publish shown."""

from __future__ import annotations

from pathlib import Path

import baton

PLAN = str(Path(__file__).resolve().parents[1] / "examples/research/plan.yaml")


def test_an_ambiguous_question_is_asked_about_and_publishing_waits_for_approval(
    store_url: str,
) -> None:
    with baton.Baton(store_url) as bt:
        asked = bt.run(baton.load_plan(PLAN), {"question": "Recent advances in batteries"},
                       goal_id="r")
        assert asked.tasks["plan"].waiting_for == "clarification"
        assert asked.tasks["plan"].question == (
            "The question says 'recent': which period should it cover?")
        bt.answer("r", "plan", "2025-2026", by="ana")
        waiting = bt.resume("r")
        assert waiting.tasks["search[0]"].status == "succeeded"
        assert waiting.tasks["publish"].waiting_for == "approval"
        assert waiting.tasks["publish"].attempts == 0
        bt.resolve("r", "publish", "approve", reason="read it", by="bo")
        done = bt.resume("r")
        assert done.status == "completed"
        assert "Recent advances in batteries (2025-2026)" in done.output["report"]
        assert bt.replay("r").ok


def test_a_refused_publication_leaves_the_report(store_url: str) -> None:
    with baton.Baton(store_url) as bt:
        plan = baton.load_plan(PLAN)
        waiting = bt.run(plan, {"question": "Tides and moons"}, goal_id="r")
        assert waiting.tasks["publish"].waiting_for == "approval"
        refused = bt.resolve("r", "publish", "reject", reason="not for publication")
        assert refused.tasks["publish"].status == "abandoned"
        # The goal's output reads $publish.url: a refused publication fails the goal.
        assert bt.resume("r").status == "failed"
