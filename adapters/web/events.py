"""The goal pages' event reads: the last few goals' events kept in memory, topped up with only
the events stored since (events are never changed, only appended), so stepping through a
10,000-event goal does not read it all again at every click."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from baton.domain.goal import GoalEvent
from baton.store.eventstore import BatonStore, GoalNotFound, translated_errors

__all__ = ["EventCache"]


class EventCache:
    def __init__(self, store: BatonStore, *, goals: int = 8) -> None:
        self.store = store
        self.goals = goals
        self._cached: OrderedDict[str, list[GoalEvent]] = OrderedDict()
        self._lock = threading.Lock()

    def events(self, goal_id: str) -> list[GoalEvent]:
        """Every event of the goal, in order (GoalNotFound when it has none)."""
        with self._lock:
            known = list(self._cached.get(goal_id, ()))
        if not known:
            events = list(self.store.events(goal_id))
        else:
            with translated_errors(self.store.url):
                newer: Any = self.store.app.repository.event_store.get(goal_id, gt=len(known))
                events = known + list(newer)
        if not events:
            raise GoalNotFound(goal_id)
        with self._lock:
            self._cached[goal_id] = events
            self._cached.move_to_end(goal_id)
            while len(self._cached) > self.goals:
                self._cached.popitem(last=False)
        return events
