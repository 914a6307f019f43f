"""Static type checks for plan bindings: walk a reference path, compare two annotations.

Used before anything runs, so it errs towards "ok": a check fails only when a value of the
source annotation can never validate as the target in pydantic's lax mode. Outputs travel as
JSON between tasks, so a datetime/UUID/Decimal source also counts as its string form.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from types import NoneType, UnionType
from typing import (
    Annotated,
    Any,
    ForwardRef,
    Literal,
    NewType,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)
from uuid import UUID

from pydantic import BaseModel, RootModel

__all__ = ["PathError", "annotation_at", "can_satisfy", "describe"]

_abc = collections.abc
_SEQUENCES = (
    list,
    tuple,
    set,
    frozenset,
    collections.deque,
    _abc.Sequence,
    _abc.MutableSequence,
    _abc.Set,
    _abc.MutableSet,
    _abc.Collection,
)
_MAPPINGS = (
    dict,
    collections.OrderedDict,
    collections.defaultdict,
    _abc.Mapping,
    _abc.MutableMapping,
)
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
        if issubclass(tp, RootModel):  # dumps as its root value, so walk that
            return _step(tp.model_fields["root"].annotation, segment, path)
        offered = _model_keys(tp)
        if segment in offered:
            return offered[segment]
        if tp.model_config.get("extra") == "allow":
            return Any  # the field may arrive as an extra
        raise PathError(segment, path, f"{describe(tp)} has no field {segment!r}")
    if dataclasses.is_dataclass(tp) or is_typeddict(tp):
        try:
            hints = get_type_hints(tp)
        except Exception:  # unresolvable forward refs: we cannot tell, so do not complain
            return Any
        if segment not in hints:
            raise PathError(segment, path, f"{describe(tp)} has no field {segment!r}")
        return hints[segment]
    origin, args = get_origin(tp) or tp, get_args(tp)
    if origin in _MAPPINGS:
        return args[1] if len(args) == 2 else Any
    if origin in _SEQUENCES:
        try:
            index = int(segment)  # the same parse the runtime resolver uses
        except ValueError:
            raise PathError(
                segment, path, f"{describe(tp)} needs a numeric index, not {segment!r}"
            ) from None
        if origin is tuple and args and args[-1] is not Ellipsis:
            if not -len(args) <= index < len(args):
                raise PathError(segment, path, f"{describe(tp)} has no index {index}")
            return args[index]
        return args[0] if args else Any
    if tp in _SCALARS or _values(tp) is not None:
        raise PathError(segment, path, f"{describe(tp)} has no field {segment!r}")
    return Any  # an unknown class: we cannot see inside it


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
    if _is_model(src) and issubclass(src, RootModel):
        return _satisfies(src.model_fields["root"].annotation, tgt, seen)
    if _is_model(tgt) and issubclass(tgt, RootModel):
        return _satisfies(src, tgt.model_fields["root"].annotation, seen)
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
    tgt_args = get_args(tgt)
    if get_origin(tgt) is tuple and tgt_args and tgt_args[-1] is not Ellipsis:
        src_args = get_args(src)
        if get_origin(src) is tuple and src_args and src_args[-1] is not Ellipsis:
            return len(src_args) == len(tgt_args) and all(
                _satisfies(s, t, seen) for s, t in zip(src_args, tgt_args, strict=True)
            )
        return all(_satisfies(_element(src), t, seen) for t in tgt_args)
    src_args = get_args(src)
    if get_origin(src) is tuple and src_args and src_args[-1] is not Ellipsis:
        return all(_satisfies(s, _element(tgt), seen) for s in src_args)
    return _satisfies(_element(src), _element(tgt), seen)


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
        keys = [k for k in (name, field.alias, field.validation_alias) if isinstance(k, str)]
        present = [offered[k] for k in keys if k in offered]
        if not present:
            if field.is_required() and src.model_config.get("extra") != "allow":
                return False
            continue
        if not _satisfies(present[0], field.annotation, seen):
            return False
    if tgt.model_config.get("extra") == "forbid":  # a source field it does not know is rejected
        known = {
            k
            for name, f in tgt.model_fields.items()
            for k in (name, f.alias, f.validation_alias)
            if isinstance(k, str)
        }
        sent = [{name, f.alias} for name, f in src.model_fields.items()]
        sent += [{name} for name in src.model_computed_fields]  # dumps include computed fields
        return all(keys & known for keys in sent)
    return True


def describe(annotation: Any) -> str:
    """Short readable name for error messages: 'list[Flight]', 'int | None', 'PriceOut'."""
    tp = annotation
    if tp is Any:
        return "Any"
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
        name = getattr(origin, "__name__", None) or str(origin).replace("typing.", "")
        return f"{name}[{', '.join(describe(a) for a in args)}]"
    if isinstance(tp, ForwardRef):
        return tp.__forward_arg__
    if isinstance(tp, type | TypeVar | NewType):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _strip(tp: Any) -> Any:
    """Peel Annotated and NewType; annotations we cannot evaluate count as Any."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif isinstance(tp, NewType):
            tp = tp.__supertype__
        elif isinstance(tp, TypeVar | ForwardRef | str):
            return Any
        elif tp is None:
            return NoneType
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, UnionType)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _without_none(union: Any) -> list[Any]:
    members = [m for m in get_args(union) if m is not NoneType]
    return members or [NoneType]


def _union(members: list[Any]) -> Any:
    unique = list(dict.fromkeys(members))
    return unique[0] if len(unique) == 1 else cast(Any, Union)[tuple(unique)]


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
    if _is_model(tp):
        return "model"
    origin = get_origin(tp) or tp
    if origin in _SEQUENCES:
        return "seq"
    if origin in _MAPPINGS:
        return "map"
    return "scalar" if tp in _SCALARS else "other"


def _element(tp: Any) -> Any:
    args = get_args(tp)
    return args[0] if args else Any


def _items(tp: Any) -> tuple[Any, Any]:
    args = get_args(tp)
    return (args[0], args[1]) if len(args) == 2 else (Any, Any)


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
