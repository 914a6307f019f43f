"""Agents for the replay, fork and secrets tests: plain typed functions, as users write them."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, SecretStr, field_validator

from tests.agents import Text

SECRET = "sk-live-0123456789abcdef"  # what must never appear in an event, an export or an audit


class Login(BaseModel):
    user: str
    api_key: SecretStr


class Session(BaseModel):
    user: str
    token: SecretStr


class Plain(BaseModel):
    user: str
    token: str  # typed plain here; a downstream contract types it as a secret


def fixable(inp: Text) -> Text:
    """Broken until the fix ships ($BATON_TEST_FIXED=1): the agent a fork re-runs."""
    if os.environ.get("BATON_TEST_FIXED") != "1":
        raise RuntimeError("bug #42: price feed parse error")
    return Text(text=inp.text + " (fixed)")


def login_dict(inp: Login) -> Session:
    """Returns plain JSON, not a model: the secret arrives in clear from the agent."""
    return {"user": inp.user, "token": SECRET}  # type: ignore[return-value]


def login_model(inp: Login) -> Session:
    return Session(user=inp.user, token=SecretStr(SECRET))


def plain_token(inp: Text) -> Plain:
    return Plain(user=inp.text, token=SECRET)


def use_session(inp: Session) -> Text:
    """Receives the mask, never the secret: secrets reach agents from their environment."""
    return Text(text=f"{inp.user}:{inp.token.get_secret_value()}")


def whoami(inp: Login) -> Text:
    return Text(text=inp.user)


class Wrapped(BaseModel):
    """Secrets one level down: in a nested model and in a list."""

    login: Login
    spare_keys: list[SecretStr] = []


def wrapped_whoami(inp: Wrapped) -> Text:
    return Text(text=inp.login.user)


def login_broken(inp: Login) -> Session:
    raise ConnectionError("identity provider unreachable")


class Checked(BaseModel):
    """A contract whose own validator has a bug: it raises what pydantic does not catch."""

    text: str

    @field_validator("text")
    @classmethod
    def _buggy(cls, value: str) -> str:
        if value.startswith("bad"):
            return {}["missing"]  # type: ignore[no-any-return]  # KeyError: the bug
        return value


def returns_checked(inp: Text) -> Checked:
    """Returns plain JSON: the orchestrator, not the agent, validates it against Checked."""
    return {"text": inp.text}  # type: ignore[return-value]


def reads_checked(inp: Checked) -> Text:
    return Text(text=inp.text)


def naps(inp: Text) -> Text:
    """Answers after 50 ms: slower than a 10 ms timeout, well within the default one."""
    time.sleep(0.05)
    return Text(text=inp.text)


def oversleeps(inp: Text) -> Text:
    """Runs far past any timeout the tests set (in a process that the timeout terminates)."""
    time.sleep(5)
    return Text(text="too late")
