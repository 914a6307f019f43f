"""eventsourcing's JSON transcoder, encoding through orjson.

Encoding an event's fields with the standard library's `json` (eventsourcing's
`JSONTranscoder`) costs ~30-40 µs per event on this machine, orjson ~3 µs, for the same bytes;
four events per task make it a tenth of a no-op task's orchestration. Decoding stays the
library's own (`json` with the transcodings' object hook: orjson has no hook, and a walk in
Python to find the transcoded values costs what it saves), so every history ever stored reads
as before.

The bytes are the library's: orjson's compact UTF-8 output is what `JSONEncoder(separators=
(",", ":"), ensure_ascii=False)` writes, datetimes and dataclasses are handed to the same
transcodings (`OPT_PASSTHROUGH_*`), key order is kept. Where orjson would write something else
it is never used: integers beyond 64 bits raise in orjson and go to the library's encoder
(as does anything orjson refuses); NaN and Infinity, which orjson would write as `null`, never
reach an event (baton.domain.json_values refuses them at the boundary). Floats may be spelled
differently (`1e-5` for `1e-05`) and decode to the same number. UUID objects would be written
as plain strings rather than the library's `uuid_hex` transcoding; Baton's events hold none
(goal ids are text), and tests/test_transcoder.py checks every golden history encodes to the
library's exact bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder

__all__ = ["OrjsonTranscoder"]

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class OrjsonTranscoder(JSONTranscoder):
    """`JSONTranscoder` (its transcodings, its decoder) with orjson encoding.

    The last datetime transcoded is remembered with its transcoding: the events a runner saves
    together share one timestamp object (an observation's, which every decision it leads to
    takes as `state.now`), so a chain task's four events format it once, not four times. Keyed
    by identity (a datetime is immutable, and the one remembered is kept alive, so its id is
    never reused); the pair is one attribute, replaced at once, for runners on other threads.
    """

    _last_datetime: tuple[Any, dict[str, Any]] = (None, {})

    def _encode_obj(self, o: Any) -> dict[str, Any]:
        last = self._last_datetime
        if o is last[0]:
            return last[1]
        encoded = super()._encode_obj(o)
        if type(o) is datetime:
            self._last_datetime = (o, encoded)
        return encoded

    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self._encode_obj, option=_OPTIONS)
        except (orjson.JSONEncodeError, TypeError):
            return super().encode(obj)  # the library's own, its own error if it has one
