"""Which model an LLM agent talks to, and building LLM agents from the plan's two forms.

Model names: `test` is pydantic-ai's `TestModel` (deterministic, local, no network);
`openai:<model>` is the OpenAI chat-completions API, at `base_url` (the plan's, else
`BATON_LLM_BASE_URL`, else the client's own `OPENAI_BASE_URL` / api.openai.com). With a base URL
set, every LLM agent talks to that OpenAI-compatible server (vLLM, Ollama, a gateway), asking for
`BATON_LLM_MODEL` when set. The key is `BATON_LLM_API_KEY`, else `OPENAI_API_KEY`; it lives in
the HTTP client only and is scrubbed from every error an agent raises.

The OpenAI client is built with `max_retries=0`: the orchestrator owns every retry. An Agent
object's own OpenAI model (`Agent("openai:<model>")`) is asked for by name through that client.
Loaded for replay or a human's decision (`strict` False), a setting that cannot work is raised by
a call, not by loading: those call no model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from openai import AsyncOpenAI
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models import Model
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.providers.openai import OpenAIProvider

from baton.domain.plan import LlmAgentSpec
from baton.llm.agents import LlmAgent
from baton.settings import Settings, settings

__all__ = ["declared_agent", "wrap_agent"]

ModelFactory = Callable[[], tuple[Model, Callable[[], Any] | None]]
_OPENAI = "openai:"
NO_KEY = "no API key: set BATON_LLM_API_KEY or OPENAI_API_KEY"


class _Resolved(NamedTuple):
    make_model: ModelFactory  # the model for one call
    model_name: str
    secret: str | None  # the key to scrub
    problem: str | None = None  # why a call would fail at once (no key), known before any


def _model(
    requested: str | Model | None, base_url: str | None, current: Settings
) -> _Resolved:
    base = (base_url or current.llm_base_url or "").strip() or None  # an env file's newline
    wanted: str | Model | None = (current.llm_model or "").strip() or requested
    # A key read from a file or a secret store often ends in a newline: sent as it is, the
    # header is illegal and every attempt fails with "Connection error." that does not say why.
    key = (current.llm_api_key or os.environ.get("OPENAI_API_KEY") or "").strip() or None
    own_settings = None
    if isinstance(wanted, OpenAIChatModel | OpenAIResponsesModel):
        # What `Agent("openai:<model>")` holds: an OpenAI client with retries of its own and a
        # key Baton would not know to scrub. Asked for by name through Baton's own client
        # instead; without a Baton base URL, at the object's endpoint with the object's key.
        if base is None:
            base = str(wanted.client.base_url)
            own = wanted.client.api_key
            key = own if isinstance(own, str) and own else key
        own_settings = wanted.settings  # its temperature and the like come along
        wanted = _OPENAI + wanted.model_name
    if isinstance(wanted, Model) and base is None:
        model = wanted
        return _Resolved(lambda: (model, None), model.model_name, None)
    if wanted == "test" and base is None:
        return _Resolved(lambda: (TestModel(), None), "test", None)
    if isinstance(wanted, str) and (wanted.startswith(_OPENAI) or base is not None):
        if base is not None:
            _check_base_url(base)
        name = wanted.removeprefix(_OPENAI)
        if name == "test" or not name:
            raise ValueError("with a base URL, set BATON_LLM_MODEL (or the plan's model) "
                             "to a model the endpoint serves")

        def openai_model() -> tuple[Model, Callable[[], Any] | None]:
            if key is None and base is None:
                raise ValueError(NO_KEY)
            client = AsyncOpenAI(base_url=base, api_key=key or "unset", max_retries=0)
            chat = OpenAIChatModel(
                name, provider=OpenAIProvider(openai_client=client), settings=own_settings
            )
            return chat, client.close

        return _Resolved(
            openai_model, wanted if wanted.startswith(_OPENAI) else _OPENAI + name, key,
            NO_KEY if key is None and base is None else None,
        )
    if wanted is None:
        raise ValueError("the Agent has no model; give it one or set BATON_LLM_MODEL")
    if isinstance(wanted, Model):  # an Agent's own model object, and a base URL to send to
        raise ValueError(
            "with a base URL, set BATON_LLM_MODEL to a model the endpoint serves (the Agent's "
            f"own model, {wanted.model_name!r}, is not an OpenAI model)"
        )
    raise ValueError(
        f"model {wanted!r}: use 'test' or 'openai:<model>' (any OpenAI-compatible server "
        "through base_url or BATON_LLM_BASE_URL)"
    )


def _check_base_url(base: str) -> None:
    """A base URL the client could never reach (no http:// or https://, as `localhost:11434/v1`
    is often written; a port out of range) fails every attempt with a connection error that
    does not say why: refused before anything runs. Quoted without user, password or query."""
    if any(char.isspace() or not char.isprintable() for char in base):
        raise ValueError("base URL holds a space or a control character")
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        raise ValueError(f"base URL is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
        raise ValueError(
            f"base URL {shown!r} needs http:// or https:// and a host "
            "(say http://127.0.0.1:11434/v1)"
        )


def _pydantic_model(target: Any, what: str) -> type[BaseModel]:
    if isinstance(target, type) and issubclass(target, BaseModel):
        return target
    raise TypeError(f"{what} must be a pydantic model, not {target!r}")


def _resolved(
    requested: str | Model | None, base_url: str | None, *, strict: bool
) -> _Resolved:
    """`_model` under the current settings; not `strict`, a setting that cannot work is raised
    only by a call (replay reads recorded answers and needs no model)."""
    try:
        return _model(requested, base_url, settings())
    except ValueError as exc:
        if strict:
            raise
        problem = exc

        def fails() -> tuple[Model, Callable[[], Any] | None]:
            raise problem

        name = requested if isinstance(requested, str) else getattr(requested, "model_name", "")
        return _Resolved(fails, str(name or "unknown"), None)


def declared_agent(
    name: str, spec: LlmAgentSpec, import_object: Callable[[str], Any], *, strict: bool = True
) -> LlmAgent:
    """An `llm:` declaration from the plan as a Baton agent."""
    input_model = _pydantic_model(import_object(spec.input), "input")
    output_model = _pydantic_model(import_object(spec.output), "output")
    agent: Agent[Any, Any] = Agent(
        output_type=output_model, instructions=spec.instructions or None,
        deps_type=input_model, name=name, retries=0,
    )
    resolved = _resolved(spec.model, spec.base_url, strict=strict)
    return LlmAgent(
        agent=agent, input_model=input_model, output_model=output_model,
        make_model=resolved.make_model, model_name=resolved.model_name,
        secret=resolved.secret, call_problem=resolved.problem,
    )


def wrap_agent(agent: Agent[Any, Any], *, strict: bool = True) -> LlmAgent:
    """A pydantic-ai Agent named in the allowlist: `output_type` is the output contract and
    `deps_type` the input contract (the built input is its deps and the prompt)."""
    output_model = _pydantic_model(agent.output_type, "its output_type")
    input_model = _pydantic_model(
        getattr(agent, "deps_type", None), "its deps_type (the input contract)"
    )
    resolved = _resolved(agent.model, None, strict=strict)
    return LlmAgent(
        agent=agent, input_model=input_model, output_model=output_model,
        make_model=resolved.make_model, model_name=resolved.model_name,
        secret=resolved.secret, call_problem=resolved.problem,
    )
