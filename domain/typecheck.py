"""Static type checks for plan bindings: walk a reference path, compare two annotations.

Used before anything runs, so it errs towards "ok": a check fails only when a value of the
source annotation can never validate as the target in pydantic's lax mode. Outputs travel as
JSON between tasks, so a datetime/UUID/Decimal source also counts as its string form.
"""

from __future__ import annotations

import functools
import typing
from collections import abc
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from types import NoneType, UnionType
from typing import Annotated, Any, ForwardRef, Literal, NewType, TypeVar, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel, RootModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

__all__ = [
    "PathError",
    "annotation_at",
    "can_satisfy",
    "describe",
    "literal_problem",
    "member_annotation",
]

# target scalar -> source scalars that can validate as it (exact classes; bool is its own row).
_SCALARS: dict[type, frozenset[type]] = {
    str: frozenset({str, bytes, Decimal, datetime, date, time, timedelta, UUID}),  # JSON strings
    bytes: frozenset({bytes, str}),
    int: frozenset({int, bool}),
    float: frozenset({float, int, bool, Decimal}),
    bool: frozenset({bool}),
    Decimal: frozenset({Decimal, int, float, str}),
    datetime: frozenset({datetime, date, str, int, float}),  # ints/floats are Unix timestamps
    date: frozenset({date, datetime, str}),  # a datetime at midnight is accepted
    time: frozenset({time, str}),
    timedelta: frozenset({timedelta, str, int, float}),
    UUID: frozenset({UUID, str}),
    NoneType: frozenset({NoneType}),
}


def literal_problem(value: Any, target: Any) -> str | None:
    """Why a literal can never validate as `target`, or None. The literal is known now, so it is
    validated exactly as the agent's input model will validate it (lax mode): `'abc'` or `3.7`
    for an `int` field is refused here rather than after the goal is stored."""
    adapter = _adapter(target)
    if adapter is None:
        return None
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        inside = ".".join(str(part) for part in error["loc"])
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        at = f" (at {inside})" if inside else ""
        return f"literal {shown} can never satisfy {describe(target)}{at}: {error['msg']}"
    return None


@functools.lru_cache(maxsize=256)
def _cached_adapter(target: Any) -> TypeAdapter[Any] | None:
    try:
        return TypeAdapter(target)
    except Exception:  # an annotation pydantic cannot build on its own (a forward reference)
        return None


def _adapter(target: Any) -> TypeAdapter[Any] | None:
    try:
        return _cached_adapter(target)
    except TypeError:  # an unhashable annotation: build it uncached
        return _cached_adapter.__wrapped__(target)


class PathError(Exception):
    """A reference names a field the model does not have."""

    def __init__(self, segment: str, path: str, reason: str) -> None:
        super().__init__(f"{reason} (in path {path!r})")
        self.segment = segment  # the first segment that does not exist
        self.path = path  # the whole dotted path that was walked
        self.reason = reason


def annotation_at(root: Any, path: Sequence[str]) -> Any:
    """The annotation found by walking dot-path `path` from `root`; the empty path gives `root`.

    Models give fields (by name or alias), Optional/unions are walked into, a numeric segment
    indexes a sequence, any segment indexes a mapping; Any or unknown types give Any from there.
    Raises PathError naming the first segment that does not exist.
    """
    current = root
    for segment in path:
        current = _step(current, segment, ".".join(path))
        if current is Any:
            return Any  # nothing more can be known, so nothing more can be wrong
    return current


def member_annotation(annotation: Any, key: str) -> Any:
    """The annotation of one item of a value typed `annotation` (a field, a mapping value, an
    index), for a literal container in a binding; Any when the type has no such item."""
    try:
        return annotation_at(annotation, (key,))
    except PathError:
        return Any


def _step(annotation: Any, segment: str, path: str) -> Any:
    tp = _strip(annotation)
    if tp is Any:
        return Any
    if _is_union(tp):
        found = []
        for member in _without_none(tp):
            try:
                found.append(_step(member, segment, path))
            except PathError:
                continue
        if not found:
            raise PathError(segment, path, f"{describe(tp)} has no {segment!r}")
        return _union(found)
    if _is_model(tp):
        offered = _model_keys(tp)
        if segment in offered:
            return offered[segment]
        if tp.model_config.get("extra") == "allow":
            return Any  # the field may arrive as an extra
        raise PathError(segment, path, f"{describe(tp)} has no field {segment!r}")
    kind, args = _kind(tp), get_args(tp)
    if kind == "map":
        return _items(tp)[1]
    if kind == "seq":
        try:
            index = int(segment)  # the same parse the runtime resolver uses
        except ValueError:
            raise PathError(
                segment, path, f"{describe(tp)} needs a numeric index, not {segment!r}"
            ) from None
        if _fixed_tuple(tp):
            if not -len(args) <= index < len(args):
                raise PathError(segment, path, f"{describe(tp)} has no index {index}")
            return args[index]
        return _element(tp)
    if kind == "scalar" or _values(tp) is not None:
        raise PathError(segment, path, f"{describe(tp)} has no field {segment!r}")
    return Any  # an unknown class (dataclass, TypedDict, custom): we cannot see inside it


def can_satisfy(source: Any, target: Any) -> bool:
    """False only when a value of `source` can never validate as `target` as a plan author means
    it; True when it can or when unsure. Optional[X] may feed X: absence is a runtime matter."""
    return _satisfies(source, target, frozenset())


def _satisfies(source: Any, target: Any, seen: frozenset[tuple[type, type]]) -> bool:
    src, tgt = _strip(source), _strip(target)
    if src is Any or tgt is Any or tgt is object or src == tgt:
        return True
    if _is_union(src):  # dropping None: Optional[X] -> X is not flagged
        return any(_satisfies(member, tgt, seen) for member in _without_none(src))
    if _is_union(tgt):
        return any(_satisfies(src, member, seen) for member in get_args(tgt))
    src_values, tgt_values = _values(src), _values(tgt)
    if src_values is not None:  # Literal and Enum sources travel as their values
        if tgt_values is not None:
            return any(_same_value(v, w) for v in src_values for w in tgt_values)
        return any(_satisfies(type(v), tgt, seen) for v in src_values)
    if tgt_values is not None:  # only a matching value will do; can its type carry one?
        return any(_satisfies(src, type(w), seen) for w in tgt_values)
    src_kind, tgt_kind = _kind(src), _kind(tgt)
    if "other" in (src_kind, tgt_kind):
        return True  # custom classes may parse anything: no false alarms
    if tgt_kind == "seq":
        return src_kind == "seq" and _sequence_fits(src, tgt, seen)
    if tgt_kind == "map":
        if src_kind == "model":  # dumped as a dict keyed by field name: every value must fit
            value_t = _items(tgt)[1]
            return all(_satisfies(a, value_t, seen) for a in _model_keys(src).values())
        return src_kind == "map" and _mapping_fits(src, tgt, seen)
    if tgt_kind == "model":
        if src_kind == "model":
            return _model_fits(src, tgt, seen)
        return src_kind == "map"  # a dict may hold the fields: unsure, so ok
    return src_kind == "scalar" and src in _SCALARS[tgt]


def _sequence_fits(src: Any, tgt: Any, seen: frozenset[tuple[type, type]]) -> bool:
    # A fixed tuple checks position by position; anything else by its one element type.
    src_items = get_args(src) if _fixed_tuple(src) else None
    tgt_items = get_args(tgt) if _fixed_tuple(tgt) else None
    if src_items is not None and tgt_items is not None:
        return len(src_items) == len(tgt_items) and all(
            _satisfies(s, t, seen) for s, t in zip(src_items, tgt_items, strict=True)
        )
    sources = src_items if src_items is not None else (_element(src),)
    targets = tgt_items if tgt_items is not None else (_element(tgt),)
    return all(_satisfies(s, t, seen) for s in sources for t in targets)


def _mapping_fits(src: Any, tgt: Any, seen: frozenset[tuple[type, type]]) -> bool:
    (src_key, src_value), (tgt_key, tgt_value) = _items(src), _items(tgt)
    # JSON object keys are strings, so a str key target takes any source key.
    key_ok = _strip(tgt_key) is str or _satisfies(src_key, tgt_key, seen)
    return key_ok and _satisfies(src_value, tgt_value, seen)


def _model_fits(
    src: type[BaseModel], tgt: type[BaseModel], seen: frozenset[tuple[type, type]]
) -> bool:
    if issubclass(src, tgt) or (src, tgt) in seen:
        return True  # a subclass is accepted as is; a cycle is assumed fine until shown not
    seen = seen | {(src, tgt)}
    offered = _model_keys(src)
    for name, field in tgt.model_fields.items():
        present = [offered[k] for k in _input_keys(name, field) if k in offered]
        if not present:
            if field.is_required() and src.model_config.get("extra") != "allow":
                return False
            continue
        if not _satisfies(present[0], field.annotation, seen):
            return False
    if tgt.model_config.get("extra") == "forbid":  # a source field it does not know is rejected
        known = {k for name, f in tgt.model_fields.items() for k in _input_keys(name, f)}
        sent = [{name, f.alias} for name, f in src.model_fields.items()]
        sent += [{name} for name in src.model_computed_fields]  # dumps include computed fields
        return all(keys & known for keys in sent)
    return True


def describe(annotation: Any) -> str:
    """Short readable name for error messages: 'list[Flight]', 'int | None', 'PriceOut'."""
    tp = annotation
    if tp is None or tp is NoneType:
        return "None"
    if tp is Ellipsis:
        return "..."
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return describe(args[0])
    if _is_union(tp):
        return " | ".join(describe(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None and args:
        return f"{describe(origin)}[{', '.join(describe(a) for a in args)}]"
    name = getattr(tp, "__name__", None)  # classes, TypeVars, NewTypes
    return name if isinstance(name, str) else str(tp).replace("typing.", "")


def _strip(tp: Any) -> Any:
    """Peel Annotated, NewType and RootModel; annotations we cannot evaluate count as Any."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif isinstance(tp, NewType):
            tp = tp.__supertype__
        elif isinstance(tp, type) and issubclass(tp, RootModel):
            tp = tp.model_fields["root"].annotation  # it dumps as its root value
        elif isinstance(tp, TypeVar | ForwardRef | str):
            return Any
        elif tp is None:
            return NoneType
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, UnionType)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _without_none(union: Any) -> list[Any]:
    members = [m for m in get_args(union) if m is not NoneType]
    return members or [NoneType]


def _union(members: list[Any]) -> Any:
    unique = tuple(m for i, m in enumerate(members) if m not in members[:i])  # no hashing needed
    return unique[0] if len(unique) == 1 else typing.Union.__getitem__(unique)


def _values(tp: Any) -> tuple[Any, ...] | None:
    """The values a Literal or Enum admits (an Enum travels as its values), else None."""
    if get_origin(tp) is Literal:
        return tuple(v.value if isinstance(v, Enum) else v for v in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tuple(member.value for member in tp)
    return None


def _same_value(v: Any, w: Any) -> bool:
    return bool(v == w) and isinstance(v, bool) == isinstance(w, bool)  # True is not 1 here


def _kind(tp: Any) -> str:
    origin = get_origin(tp) or tp
    if not isinstance(origin, type):
        return "other"
    if issubclass(origin, BaseModel):
        return "model"
    if issubclass(origin, abc.Mapping):
        return "map"
    if issubclass(origin, abc.Sequence | abc.Set) and not issubclass(origin, str | bytes):
        return "seq"  # str and bytes are sequences to Python but scalars to pydantic
    return "scalar" if origin in _SCALARS else "other"


def _fixed_tuple(tp: Any) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and bool(args) and args[-1] is not Ellipsis


def _element(tp: Any) -> Any:
    args = get_args(tp)
    return args[0] if args else Any


def _items(tp: Any) -> tuple[Any, Any]:
    args = get_args(tp)
    return (args[0], args[1]) if len(args) == 2 else (Any, Any)


def _input_keys(name: str, field: FieldInfo) -> list[str]:
    """Every key under which a model accepts the field on input."""
    return [k for k in (name, field.alias, field.validation_alias) if isinstance(k, str)]


def _model_keys(model: type[BaseModel]) -> dict[str, Any]:
    """Field and computed-field annotations by every key a dump of `model` may use."""
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        keys[name] = field.annotation
        if isinstance(field.alias, str):
            keys.setdefault(field.alias, field.annotation)
    for name, computed in model.model_computed_fields.items():
        keys[name] = computed.return_type
    return keys
