"""`json_schema` (baton.history.schemas): pydantic's schema of a model, generated once per class,
handed out as a fresh copy with the same keys in the same order."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

from baton.history.schemas import json_schema
from tests.agents import Text


class Nested(BaseModel):
    items: list[Text]
    ratio: float = Field(0.5, ge=0.0, le=1.0)
    huge: int = Field(0, le=2**70)  # beyond orjson: generated each time, never cached


def test_the_schema_is_pydantic_s_own_in_the_same_order_and_a_fresh_copy() -> None:
    for model in (Text, Nested):
        first, second = json_schema(model), json_schema(model)
        assert json.dumps(first) == json.dumps(model.model_json_schema())
        assert first == second and first is not second
        first["title"] = "changed"  # a caller's change never reaches the next goal's copy
        assert json_schema(model)["title"] == model.__name__
