"""Contracts as JSON schemas: recorded when a goal starts, read back where the code is absent.

A run file is meant to be checked on a machine that has the file and not the user's agent
modules (the 2am path), and a run file from elsewhere is untrusted: importing the modules it
names would run code it chose. So `Started` records each contract's JSON schema
(pydantic's `model_json_schema()`), and `contracts_from_schemas` turns them back into pydantic
models that validate and normalise outputs as the originals did for the JSON shapes a schema
describes: objects (nested models, `$ref`/`$defs`), lists, tuples, mappings, unions and
optionals, literals and enums, defaults, the common string formats (date-time, date, time,
uuid, secrets) and numeric/length constraints. A custom validator leaves no trace in a schema:
replay then reports the decision it changed as a divergence, never a false `ok`.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model

from baton.domain.contracts import AgentContract
from baton.domain.expansion import PlanContracts

__all__ = ["SchemaError", "contracts_from_schemas", "model_from_schema", "recorded_schemas"]


class SchemaError(ValueError):
    """A recorded schema this module cannot turn back into a model."""


def recorded_schemas(
    contracts: dict[str, AgentContract], input_model: type[BaseModel] | None
) -> dict[str, Any]:
    """What `Started` records: every used agent's input and output schema, and the goal's."""
    return {
        "agents": {
            name: {
                "input": json_schema(contract.input_model),
                "output": json_schema(contract.output_model),
                # an agent handed an attempt context gets it recorded with each dispatch
                **({"attempt": True} if contract.takes_attempt else {}),
            }
            for name, contract in sorted(contracts.items())
        },
        "input": None if input_model is None else json_schema(input_model),
    } | _results_schemas(contracts)


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model.model_json_schema()`, a fresh copy of it each time: generated once per model
    class (pydantic takes a millisecond or more a model, every goal started recorded it
    anew), kept as JSON, parsed again per call (a few microseconds; same keys, same order)."""
    cached = _schema_json(model)
    if cached is None:  # beyond what orjson writes (an integer past 64 bits): not cached
        return model.model_json_schema()
    loaded: dict[str, Any] = orjson.loads(cached)
    return loaded


@functools.lru_cache(maxsize=256)
def _schema_json(model: type[BaseModel]) -> bytes | None:
    try:
        return orjson.dumps(model.model_json_schema())
    except (orjson.JSONEncodeError, TypeError):
        return None


def _results_schemas(contracts: dict[str, AgentContract]) -> dict[str, Any]:
    """Planners' `expands.result` models, by `module:Model` (only in plans that have some)."""
    results: dict[str, type[BaseModel]] = getattr(contracts, "results", {})
    if not results:
        return {}
    return {"results": {path: json_schema(model) for path, model in sorted(results.items())}}


def contracts_from_schemas(schemas: dict[str, Any]) -> dict[str, AgentContract]:
    """The agents' contracts rebuilt from recorded schemas; SchemaError names the agent."""
    contracts: dict[str, AgentContract] = {}
    for name, pair in (schemas.get("agents") or {}).items():
        try:
            contracts[name] = AgentContract(
                input_model=model_from_schema(pair["input"]),
                output_model=model_from_schema(pair["output"]),
                takes_attempt=pair.get("attempt") is True,
            )
        except (KeyError, TypeError, SchemaError) as exc:
            raise SchemaError(f"agent {name!r}: recorded schema unusable: {exc}") from None
    results: dict[str, type[BaseModel]] = {}
    for path, schema in (schemas.get("results") or {}).items():
        try:
            results[path] = model_from_schema(schema)
        except (TypeError, SchemaError) as exc:
            raise SchemaError(f"expands.result {path!r}: recorded schema unusable: {exc}") from None
    try:  # what a fragment's `$goal` bindings are checked against; unknown types pass
        input_model = model_from_schema(schemas["input"]) if schemas.get("input") else None
    except (TypeError, SchemaError):
        input_model = None
    return PlanContracts(contracts, input_model=input_model, results=results)


def model_from_schema(schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model equivalent to the one `schema` was generated from."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise SchemaError("not an object schema")
    builder = _Builder(schema.get("$defs") or {})
    return builder.model(schema, "Model")


_FORMATS: dict[str, Any] = {
    "date-time": dt.datetime,
    "date": dt.date,
    "time": dt.time,
    "duration": dt.timedelta,
    "uuid": uuid.UUID,
}
_SIMPLE: dict[str, Any] = {"integer": int, "number": float, "boolean": bool, "null": type(None)}
# JSON-schema keyword -> pydantic Field constraint.
_CONSTRAINTS = {
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "multipleOf": "multiple_of",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_length",
    "maxItems": "max_length",
    "pattern": "pattern",
}


class _Builder:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.built: dict[str, Any] = {}

    def model(self, node: dict[str, Any], fallback: str) -> type[BaseModel]:
        required = set(node.get("required") or ())
        fields: dict[str, Any] = {}
        for name, sub in (node.get("properties") or {}).items():
            if not isinstance(sub, dict):
                raise SchemaError(f"property {name!r} is not a schema")
            annotation = self.annotation(sub)
            if name in required:
                default: Any = ...
            else:
                default = sub.get("default")
            if name.startswith("_") or hasattr(BaseModel, name):
                raise SchemaError(f"property name {name!r} cannot be a model field")
            fields[name] = (annotation, Field(default))
        forbid = node.get("additionalProperties") is False
        config = ConfigDict(extra="forbid" if forbid else "ignore", validate_default=True)
        model: type[BaseModel] = create_model(
            str(node.get("title") or fallback), __config__=config, **fields
        )
        return model

    def annotation(self, node: dict[str, Any]) -> Any:
        constraints = {
            _CONSTRAINTS[key]: value for key, value in node.items() if key in _CONSTRAINTS
        }
        base = self._base(node)
        return Annotated[base, Field(**constraints)] if constraints else base

    def _base(self, node: dict[str, Any]) -> Any:
        if "$ref" in node:
            return self._ref(str(node["$ref"]))
        for key in ("anyOf", "oneOf"):
            if key in node:
                return self._union([self.annotation(sub) for sub in node[key]])
        if "allOf" in node and len(node["allOf"]) == 1:
            return self.annotation(node["allOf"][0])
        if "const" in node:
            return Literal[node["const"]]
        if "enum" in node:
            return Literal[tuple(node["enum"])]
        kind = node.get("type")
        if isinstance(kind, list):
            return self._union([self._base({**node, "type": k}) for k in kind])
        if kind == "string":
            if node.get("format") == "password" and node.get("writeOnly"):
                return SecretStr
            return _FORMATS.get(str(node.get("format")), str)
        if kind in _SIMPLE:
            return _SIMPLE[kind]
        if kind == "array":
            if "prefixItems" in node:
                items = tuple(self.annotation(sub) for sub in node["prefixItems"])
                return tuple[items] if items else tuple[()]  # type: ignore[valid-type]
            item = node.get("items")
            return list[self.annotation(item) if isinstance(item, dict) else Any]  # type: ignore[misc]
        if kind == "object":
            if "properties" in node:
                return self.model(node, "Object")
            values = node.get("additionalProperties")
            value = self.annotation(values) if isinstance(values, dict) else Any
            return dict[str, value]  # type: ignore[valid-type]
        if kind is None:
            return Any
        raise SchemaError(f"unsupported schema type {kind!r}")

    def _ref(self, ref: str) -> Any:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in self.defs:
            raise SchemaError(f"unresolvable $ref {ref!r}")
        name = ref[len(prefix) :]
        if name not in self.built:
            self.built[name] = None  # a recursive model: refused below rather than looping
            self.built[name] = self.annotation({"title": name, **self.defs[name]})
        if self.built[name] is None:
            raise SchemaError(f"recursive model {name!r}")
        return self.built[name]

    @staticmethod
    def _union(members: list[Any]) -> Any:
        return Union[tuple(members)] if len(members) > 1 else members[0]  # noqa: UP007
