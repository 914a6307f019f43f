"""Loading what a plan names: the plan file itself, agents from `module:callable`, contracts.

Importing user code is I/O, so it lives here; the domain receives the resulting contracts.
Every failure becomes a PlanIssue naming where it happened (`agents.search`, `input`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ValidationError

from baton.domain.attempts import AttemptContext
from baton.domain.contract_check import check_contracts
from baton.domain.contracts import AgentContract, validation_errors
from baton.domain.errors import InputError, PlanError, PlanIssue
from baton.domain.expansion import PlanContracts
from baton.domain.json_values import MAX_DEPTH, json_problem
from baton.domain.plan import LlmDeclaration, Plan, parse_plan
from baton.domain.references import GOAL
from baton.domain.secrets import redact_source

__all__ = [
    "AgentRef",
    "LoadedPlan",
    "import_object",
    "inspect_agent",
    "load_plan_file",
    "prepare_plan",
]

# An agent named by `module:callable`, or the callable itself (the Python API's `agents=`).
AgentRef = str | Callable[..., Any]


@dataclass
class LoadedPlan:
    """A plan that passed every static check, with its agents and contracts resolved."""

    plan: Plan
    contracts: dict[str, AgentContract]
    agents: dict[str, Callable[..., Any]]
    input_model: type[BaseModel] | None = None

    def check_calls(self, source: str = "plan") -> None:
        """Before a run: an agent every call of which would fail at once (an `openai:` model
        with no API key) is a plan error naming it, before anything is stored. Not part of
        loading: validate, submit (a worker elsewhere holds the key) and replay need no key."""
        issues = [
            PlanIssue(f"agents.{name}", f"llm: {problem}")
            for name, agent in self.agents.items()
            if (problem := getattr(agent, "call_problem", None))
        ]
        if issues:
            raise PlanError(issues, source=source)

    def cost_warnings(self) -> list[str]:
        """With `budget.max_cost_usd`: one line per LLM agent whose model has no price (its
        calls cost 0, so the cost budget cannot limit them). A warning, not an error: a local
        model (Ollama, vLLM) really costs nothing, and a plan written for a priced model must
        still run against one (BATON_LLM_MODEL)."""
        if self.plan.budget.max_cost_usd is None:
            return []
        return [
            f"agents.{name}: llm: {problem}"
            for name, agent in self.agents.items()
            if callable(unpriced := getattr(agent, "cost_problem", None))
            and (problem := unpriced())
        ]

    def validate_input(self, data: Any) -> Any:
        """The goal input as JSON, validated against the plan's input model when it has one."""
        problem = json_problem(data)  # first: nothing below may walk an unbounded value
        if problem is not None:
            raise InputError(f"goal input cannot be stored: {problem}")
        if self.input_model is None:
            if not isinstance(data, dict):
                raise InputError("goal input: expected a JSON object")
            return redact_source(data, GOAL, self.plan, self.contracts)
        try:
            validated = self.input_model.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            errors = "; ".join(validation_errors(exc, limit=5))
            raise InputError(
                f"goal input does not satisfy {self.input_model.__name__}: {errors}"
            ) from None
        problem = json_problem(validated)  # a float field accepts "NaN" as text
        if problem is not None:
            raise InputError(f"goal input cannot be stored: {problem}")
        return redact_source(validated, GOAL, self.plan, self.contracts)  # never in clear


def _ensure_cwd_importable() -> None:
    # Like pytest and uvicorn: `examples.travel.agents` resolves from the working directory.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def import_object(path: str) -> Any:
    """Import `module:attribute`; raises ValueError/ImportError/AttributeError with detail."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{path!r} is not of the form 'module:callable'")
    _ensure_cwd_importable()
    try:
        module = importlib.import_module(module_name)
    except SystemExit as exc:
        # `sys.exit("API_KEY missing")` at import (a script's habit): not this process's exit.
        # A worker ended with the module's code (3: "waits for a human"), no word of why, and
        # its supervisor restarted it into the same import; `run` too, before anything ran.
        raise ImportError(
            f"the module called sys.exit({exc.code!r}) as it was imported"
        ) from None
    except ModuleNotFoundError as exc:
        top = exc.name or ""
        if module_name != top and not module_name.startswith(top + "."):
            raise  # the module was found; something it imports was not
        # Where it was looked for: a plan run from another directory is the usual cause.
        raise ModuleNotFoundError(
            f"{exc}: not in the working directory {os.getcwd()}, on PYTHONPATH or installed",
            name=exc.name,
        ) from None
    if module_name not in _imported_mtimes:  # once per module, not a stat per lookup
        _imported_mtimes[module_name] = _mtime_ns(module)
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            if _mtime_ns(module) == _imported_mtimes[module_name]:
                raise
            # A long-lived process (a worker, the web view) imports a module once: after a
            # deploy it still runs the old code, and looking again never finds the new name.
            raise AttributeError(
                f"{exc} ({module.__file__} changed after this process imported it: "
                "restart the process to load the new code)"
            ) from None
    return target


# The modification time of each module's file when import_object first imported it, to tell a
# name missing from the code from a name missing from the code this process still runs.
_imported_mtimes: dict[str, int | None] = {}


def _mtime_ns(module: Any) -> int | None:
    try:
        return os.stat(module.__file__).st_mtime_ns
    except (OSError, TypeError):  # a module without a file, or gone
        return None


def _attempt_model(annotation: Any) -> type[BaseModel] | None:
    """The model an agent's `attempt` parameter is annotated with, when it is not Baton's
    AttemptContext; refused unless it can hold an AttemptContext's fields."""
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return None
    if annotation is AttemptContext:
        return None
    try:
        annotation.model_validate(AttemptContext(number=1).model_dump())
    except ValidationError as exc:
        raise TypeError(
            f"parameter 'attempt' is annotated with {annotation.__name__}, which cannot hold "
            f"an AttemptContext ({'; '.join(validation_errors(exc, limit=2))})"
        ) from None
    return annotation


_KINDS = {
    inspect.Parameter.KEYWORD_ONLY: "keyword-only",
    inspect.Parameter.VAR_POSITIONAL: "a *args parameter",
    inspect.Parameter.VAR_KEYWORD: "a **kwargs parameter",
}


def inspect_agent(agent: Callable[..., Any]) -> AgentContract:
    """Read an agent's contract from its signature: first parameter in, return annotation out."""
    if not callable(agent):
        raise TypeError("is not callable")
    try:
        hints = typing.get_type_hints(agent)
    except Exception as exc:  # unresolvable string annotations
        raise TypeError(f"annotations cannot be resolved: {exc}") from None
    params = list(inspect.signature(agent).parameters.values())
    if not params:
        raise TypeError("takes no parameter; its first parameter must be its input model")
    first = params[0]
    if first.kind not in (inspect.Parameter.POSITIONAL_ONLY,
                          inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise TypeError(
            f"first parameter {first.name!r} is {_KINDS[first.kind]}: Baton passes the input "
            "as the first positional argument"
        )
    input_model = hints.get(params[0].name)
    output_model = hints.get("return")
    if not (isinstance(input_model, type) and issubclass(input_model, BaseModel)):
        raise TypeError(
            f"first parameter {params[0].name!r} must be annotated with a pydantic model"
        )
    if not (isinstance(output_model, type) and issubclass(output_model, BaseModel)):
        raise TypeError("return annotation must be a pydantic model")
    takes_key = any(p.name == "idempotency_key" for p in params[1:])
    takes_attempt = any(p.name == "attempt" for p in params[1:])
    attempt_model = _attempt_model(hints.get("attempt"))
    for extra in params[1:]:
        bound = extra.name in ("idempotency_key", "attempt")
        if bound and extra.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"parameter {extra.name!r} is positional-only: Baton passes it by "
                            "keyword")
        if not bound and extra.default is inspect.Parameter.empty and (
            extra.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ):
            raise TypeError(f"parameter {extra.name!r} has no default and Baton cannot bind it")
    return AgentContract(
        input_model=input_model,
        output_model=output_model,
        takes_idempotency_key=takes_key,
        takes_attempt=takes_attempt,
        attempt_model=attempt_model,
        is_async=inspect.iscoroutinefunction(agent),
    )


class _PlanYamlLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing aliases and bounding nesting while composing.

    Aliases are refused outright rather than counted: a plan has no need for them (a mapping
    can be written out), and refusing them ends both a self-referencing node (`&r [x, *r]`,
    which no JSON can hold) and an alias bomb (nine nested aliases that expand to 10^9 items
    when anything walks the value) at the first `*`, with its line, before anything expands.
    Nesting is counted as nodes are composed (PyYAML composes recursively), so a document
    nested thousands deep fails in one line rather than with a RecursionError.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None,
                f"aliases (*{event.anchor}) are not allowed in a plan file; write the value out",
                event.start_mark,
            )
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # PyYAML keeps the last of two equal keys: a setting written twice would be dropped
        # without a word, as a misspelt key would be if unknown keys were not errors.
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:`, merged by PyYAML itself
                    continue
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, str | int | float | bool):
                    continue  # an unhashable one is PyYAML's own error, below
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's keys, each once (`object_pairs_hook`): the json module keeps the last of
    two equal keys, dropping the first without a word."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key!r}")
        found[key] = value
    return found


# Deeper than this is refused before parsing: the json module's decoder recurses per level, and
# a value nested to Python's recursion limit left the process at the bottom of its stack, where
# any finalizer the garbage collector ran (a connection's, in a web server) failed in turn.
# Above MAX_DEPTH, so that a merely too deep value is still refused with where it is too deep,
# and far below the recursion limit, which the caller's own frames (a web server's) share.
_PARSE_DEPTH = 200
_ESCAPE = re.compile(r"\\.", re.DOTALL)  # a backslash and what it escapes
_STRING = re.compile(r'"[^"]*"')  # once escapes are gone: no backtracking, one pass
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nesting(text: str) -> int:
    """How deep the arrays and objects of JSON `text` nest, counted without recursion, in
    passes linear in its length (escapes, then strings, removed first); only counted when
    there are enough brackets to matter."""
    if text.count("[") + text.count("{") <= _PARSE_DEPTH:
        return 0
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def parse_json_value(text: str) -> Any:
    """JSON a user typed (`--output`, `--input`, the web view's output form): the value, or a
    ValueError whose one line says why not: not JSON, a key written twice, nested too deeply
    to parse, or nothing the store can hold (NaN, a lone surrogate, too deep). The one parse
    of it, for the CLI and the web view alike."""
    if _nesting(text) > _PARSE_DEPTH:
        raise ValueError("nested too deeply")
    try:
        value = json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:  # a duplicate key, or a number too long to convert
        raise ValueError(f"not valid JSON: {exc}") from None
    problem = json_problem(value)
    if problem is not None:
        raise ValueError(f"cannot be stored: {problem}")
    return value


def _parse_plan_text(text: str, *, as_json: bool) -> Any:
    if as_json:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=unique_keys)
    return yaml.load(text, Loader=_PlanYamlLoader)  # a SafeLoader subclass


def _load_agent(
    name: str, target: str | LlmDeclaration, *, calls_models: bool = True
) -> tuple[Any, AgentContract]:
    """An allowlisted agent and its contract: a typed function, a pydantic-ai Agent object, or
    an `llm:` declaration (the last two need the `llm` extra; docs/llm.md). `calls_models`
    False: a model setting that cannot work (BATON_LLM_*) is not a plan problem, only a call's."""
    if isinstance(target, LlmDeclaration):
        from baton.llm.models import declared_agent  # only plans with LLM agents import it

        llm_agent = declared_agent(name, target.llm, import_object, strict=calls_models)
        return llm_agent, llm_agent.contract
    agent = import_object(target)
    if type(agent).__module__.startswith("pydantic_ai"):
        from baton.llm.models import wrap_agent

        wrapped = wrap_agent(agent, strict=calls_models)
        return wrapped, wrapped.contract
    return agent, inspect_agent(agent)


def read_plan_data(path: str) -> dict[str, Any]:
    """Parse a plan file (YAML or JSON) into data; PlanError on a missing or malformed file."""
    file = Path(path)
    if "\x00" in path:  # open() would raise a bare ValueError
        issue = PlanIssue("path", "a file name cannot contain a NUL byte")
        raise PlanError([issue], source=repr(path))
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError([PlanIssue(path, exc.strerror or str(exc))], source=path) from None
    except UnicodeDecodeError as exc:
        issue = PlanIssue(path, f"not a text file (UTF-8): {exc.reason} at byte {exc.start}")
        raise PlanError([issue], source=path) from None
    try:
        data = _parse_plan_text(text, as_json=file.suffix == ".json")
    except (ValueError, yaml.YAMLError) as exc:  # JSONDecodeError is a ValueError
        detail = _yaml_problem(exc) if isinstance(exc, yaml.MarkedYAMLError) else " ".join(
            str(exc).split())
        raise PlanError([PlanIssue(path, f"not valid YAML/JSON: {detail}")], source=path) from None
    except RecursionError:  # the json module's decoder recurses per level
        issue = PlanIssue(path, f"not valid YAML/JSON: nested more than {MAX_DEPTH} levels deep")
        raise PlanError([issue], source=path) from None
    if not isinstance(data, dict):
        raise PlanError([PlanIssue(path, "a plan must be a mapping")], source=path)
    return data


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """`line 9, column 1: duplicate key 'name'`: PyYAML's message without the quoted source
    and caret lines it draws for a terminal (its `"<unicode string>"` names no file)."""
    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    detail = str(exc.problem or exc)
    if exc.problem_mark:
        detail = f"{at(exc.problem_mark)}: {detail}"
    if exc.context:
        detail += f" ({exc.context}" + (f" at {at(exc.context_mark)})" if exc.context_mark
                                        else ")")
    return " ".join(detail.split())


class Nameless(ValueError):
    """An agent given as an object that has no `module:qualname` (an instance, a partial)."""


def agent_path(agent: Callable[..., Any]) -> str:
    """The `module:callable` path that imports `agent` again, recorded in the goal's plan so that
    `resume` (in any process) finds the same function; ValueError when there is none."""
    module, name = getattr(agent, "__module__", None), getattr(agent, "__qualname__", None)
    if not callable(agent) or not module or not name:
        raise Nameless(
            f"an object of type {type(agent).__name__} is not a function or class with a module "
            "and a name: give a function defined at the top level of a module, or for a "
            "pydantic-ai Agent object the 'module:name' path that imports it"
        )
    path = f"{module}:{name}"
    if module == "__main__":  # imports back here only: a worker or `resume` has another __main__
        raise ValueError(
            f"{path} is defined in the script being run, which another process (a worker, "
            "`baton resume`) cannot import; define it in a module and import it from there"
        )
    why = ""
    try:
        found = import_object(path)
    except ImportError as exc:  # a module loaded from a file path, not importable by its name
        found, why = None, f" ({_short(exc)})"
    except Exception:  # a lambda's or a nested function's name: not an attribute
        found = None
    # A classmethod (or a staticmethod reached through an instance) is a new bound method at
    # every access: equal, not identical.
    if found is not agent and found != agent:  # a lambda, a nested function, a callable object
        raise ValueError(
            f"{path} does not import back as this callable{why}; pass a function defined at "
            "the top level of an importable module (a resumed goal imports it by that name)"
        )
    return path


def _with_agents(
    data: dict[str, Any], agents: Mapping[str, AgentRef]
) -> tuple[dict[str, Any], dict[str, Callable[..., Any]], list[PlanIssue], set[str]]:
    """The plan data with `agents` over its `agents:` (callables recorded by their path), the
    callables, the issues, and the agents given as objects with no name to import them by."""
    allowlist = dict(data.get("agents") or {}) if isinstance(data.get("agents"), dict) else {}
    given: dict[str, Callable[..., Any]] = {}
    issues: list[PlanIssue] = []
    nameless: set[str] = set()
    for name, agent in agents.items():
        if isinstance(agent, str):
            allowlist[name] = agent
            continue
        try:
            allowlist[name] = agent_path(agent)
        except ValueError as exc:
            issues.append(PlanIssue(f"agents.{name}", str(exc)))
            allowlist[name] = f"{getattr(agent, '__module__', '?')}:{name}"  # checked on, not run
            if isinstance(exc, Nameless):  # no contract to read either: said once
                nameless.add(name)
                continue
        given[name] = agent
    return {**data, "agents": allowlist}, given, issues, nameless


def prepare_plan(
    data: dict[str, Any], *, source: str = "plan", agents: Mapping[str, AgentRef] | None = None,
    calls_models: bool = True, recorded: bool = False,
) -> LoadedPlan:
    """Validate plan data, load its allowlisted agents, and check every contract statically.

    `agents` (the Python API) adds to or replaces entries of the plan's `agents:`; a callable
    is checked like an imported one and recorded by its `module:callable` path.
    `calls_models` False (replay, which reads recorded answers): the LLM agents' contracts are
    all it needs, so the model settings (BATON_LLM_BASE_URL, ...) are not judged.
    `recorded`: a goal's plan as its `Started` stored it; what only a new plan is refused for
    (credentials in a base URL) is not judged again, so an old history still loads.
    """
    given: dict[str, Callable[..., Any]] = {}
    early: list[PlanIssue] = []
    refused: set[str] = set()
    if agents:
        data, given, early, refused = _with_agents(data, agents)
    plan = parse_plan(data, source=source)
    binding_issues = plan.binding_issues()
    if binding_issues:  # every check below reads the parsed bindings
        raise PlanError(early + binding_issues, source=source)
    issues: list[PlanIssue] = early + plan.graph_issues()  # reported with the contract issues
    if not recorded:
        issues += _credential_issues(plan)
    loaded_agents: dict[str, Callable[..., Any]] = {}
    contracts = PlanContracts()
    used = {task.agent for task in plan.tasks} | expansion_agents(plan)
    for name, target in plan.agents.items():
        if name not in used or name in refused:
            continue  # allowlisted but unused, or refused above: nothing to import
        try:
            if name in given:
                agent, contracts[name] = given[name], inspect_agent(given[name])
            else:
                agent, contracts[name] = _load_agent(
                    name, target, calls_models=calls_models
                )
            loaded_agents[name] = agent
        except Exception as exc:  # any import-time failure of user code is a plan problem
            where = target if isinstance(target, str) else "llm"
            issues.append(PlanIssue(f"agents.{name}", f"{where}: {_short(exc)}{_extra(exc)}"))
    input_model: type[BaseModel] | None = None
    if plan.input is not None:
        try:
            candidate = import_object(plan.input)
        except Exception as exc:
            issues.append(PlanIssue("input", f"{plan.input}: {_short(exc)}"))
        else:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                input_model = candidate
            else:
                issues.append(PlanIssue("input", f"{plan.input}: is not a pydantic model"))
    contracts.input_model = input_model
    issues += _load_results(plan, contracts)
    issues += check_contracts(plan, contracts, input_model=input_model)
    issues += [
        PlanIssue(f"tasks[{task.id}].isolation", "process isolation is for sync agents; an "
                  "async agent is cancelled at its timeout")
        for task in plan.tasks
        if task.isolation == "process" and task.agent in contracts
        and contracts[task.agent].is_async
    ]
    if issues:
        raise PlanError(issues, source=source)
    return LoadedPlan(plan, contracts, loaded_agents, input_model)


def _credential_issues(plan: Plan) -> list[PlanIssue]:
    """A `base_url` holding credentials (`https://user:secret@host/v1`) would be stored with the
    plan in the goal's `Started` event, in every export and run file: refused, the URL not
    quoted (it holds the secret)."""
    issues: list[PlanIssue] = []
    for name, target in plan.agents.items():
        if not isinstance(target, LlmDeclaration) or not target.llm.base_url:
            continue
        url = target.llm.base_url
        try:
            netloc = urlsplit(url).netloc
        except ValueError:  # a malformed host ("[::1"): still look for user info before it
            netloc = url.partition("//")[2].partition("/")[0]
        if "@" in netloc:
            issues.append(PlanIssue(
                f"agents.{name}.llm.base_url",
                "holds credentials (user:password@), which would be stored with the goal; "
                "put the key in BATON_LLM_API_KEY (or OPENAI_API_KEY) and drop it from the URL",
            ))
        elif "?" in url or "#" in url:
            # `?api-key=...` as some gateways take it: the client appends `/chat/completions`
            # after the query, so it never reaches the server as one, and the key is stored.
            issues.append(PlanIssue(
                f"agents.{name}.llm.base_url",
                "has a query or fragment (?... or #...), which the OpenAI client cannot use (it "
                "appends /chat/completions after it) and which would be stored with the goal; "
                "give the endpoint only, and the key in BATON_LLM_API_KEY (or OPENAI_API_KEY)",
            ))
    return issues


def expansion_agents(plan: Plan) -> set[str]:
    """Agents a planner's fragment may use: loaded (and their contracts recorded) up front, so
    a fragment is checked against them before anything of it runs."""
    agents: set[str] = set()
    for task in plan.tasks:
        if task.expands is not None:
            allowed = task.expands.may_use
            agents.update(allowed if allowed is not None else plan.agents)
    return agents


def _load_results(plan: Plan, contracts: PlanContracts) -> list[PlanIssue]:
    """Import each planner's `expands.result` model into `contracts.results`."""
    issues: list[PlanIssue] = []
    for task in plan.tasks:
        if task.expands is None or task.expands.result in contracts.results:
            continue
        where = f"tasks[{task.id}].expands.result"
        try:
            model = import_object(task.expands.result)
        except Exception as exc:
            issues.append(PlanIssue(where, f"{task.expands.result}: {_short(exc)}"))
            continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            contracts.results[task.expands.result] = model
        else:
            issues.append(PlanIssue(where, f"{task.expands.result}: is not a pydantic model"))
    return issues


def load_plan_file(path: str) -> LoadedPlan:
    return prepare_plan(read_plan_data(path), source=path)


# Modules only the `llm` extra installs: an agent that needs one says what to install.
_LLM_EXTRA_MODULES = frozenset({"pydantic_ai", "openai", "genai_prices"})


def _extra(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in (
        _LLM_EXTRA_MODULES
    ):
        return "; LLM agents need the llm extra: pip install 'baton[llm]'"
    return ""


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
