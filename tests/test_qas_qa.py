"""What an SRE running workers on PostgreSQL found: secrets in messages, ..."""

from __future__ import annotations

import pytest

from baton.store.eventstore import describe_store
from tests.cli_support import baton


@pytest.mark.parametrize("url, secret", [
    ("postgresql://sre@127.0.0.1:1/db?password=hunter2", "hunter2"),
    ("postgresql://sre@127.0.0.1:1/db?schema=s&password=hunter2&sslmode=disable", "hunter2"),
    ("postgresql://sre:hunter2@127.0.0.1:1/db?sslpassword=keypass", "keypass"),
    ("postgresql://sre:hunter2@127.0.0.1:1/db?sslpassword=keypass", "hunter2"),
])
def test_a_password_given_as_a_url_parameter_is_masked_like_one_in_the_netloc(
    url: str, secret: str
) -> None:
    shown = describe_store(url)
    assert secret not in shown and "***" in shown
    unchanged = "postgresql://sre@h/db?schema=password"
    assert describe_store(unchanged) == unchanged


def test_a_store_that_refuses_the_connection_never_prints_a_url_parameter_password() -> None:
    # Port 1: nothing listens there; the error names the store, password masked.
    result = baton("status", store="postgresql://sre@127.0.0.1:1/db?schema=x&password=hunter2")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "hunter2" not in result.err and "password=***" in result.err
