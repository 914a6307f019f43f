"""`idempotency_key` is uuid5 of the goal and task ids: the
same text the uuid module gives (keys already handed to agents must not change)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from baton.domain.contracts import _KEY_NAMESPACE, idempotency_key


@given(st.text(max_size=60), st.text(max_size=30))
def test_the_key_is_uuid5_of_goal_and_task(goal_id: str, task_id: str) -> None:
    try:
        expected = str(uuid.uuid5(_KEY_NAMESPACE, f"{goal_id}/{task_id}"))
    except UnicodeEncodeError:  # a lone surrogate: no id of either kind is ever one
        return
    assert idempotency_key(goal_id, task_id) == expected


def test_a_known_key() -> None:
    assert idempotency_key("g", "a") == str(uuid.uuid5(_KEY_NAMESPACE, "g/a"))
