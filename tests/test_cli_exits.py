"""Exit codes and one-line errors that a user's trial found wrong: a closed stdout, a cancel, an
empty goal id, files created on bad input, export into a new directory, --version, PostgreSQL
URL parameters."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import baton as baton_package
from tests.cli_support import ROOT, baton
from tests.conftest import PG_URL, postgres_unreachable

PLAN = "examples/travel/plan.yaml"
TRIP = "@examples/travel/trip.json"


def _with_stdout_closed(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    """Run baton with a stdout whose reader has already gone: every write is a broken pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "baton.cli", *args], cwd=ROOT, stdout=write_end,
            stderr=subprocess.PIPE, text=True, env={**os.environ, "BATON_STORE": store},
            timeout=120, check=False,
        )
    finally:
        os.close(write_end)


def test_a_closed_stdout_ends_quietly_with_the_code_for_what_happened(store_url: str) -> None:
    assert baton("run", PLAN, "--input", TRIP, "--goal-id", "trip", store=store_url).code == 0
    for args, code in [(["export", "trip"], 0), (["replay", "trip"], 0),
                       (["replay", "trip", "--json"], 0), (["audit", "trip"], 0),
                       (["status"], 0), (["status", "trip"], 0),
                       (["run", PLAN, "--input", TRIP], 0)]:
        result = _with_stdout_closed(*args, store=store_url)
        assert (result.returncode, result.stderr) == (code, ""), args


def _with_stdout(target: str, *args: str, store: str) -> subprocess.CompletedProcess[str]:
    """Run baton with its stdout redirected by the shell: `>&-` (closed) or `>/dev/full`."""
    command = " ".join([sys.executable, "-m", "baton.cli", *args])
    return subprocess.run(
        ["sh", "-c", f"exec {command} {target}"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BATON_STORE": store}, timeout=120, check=False,
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_closed_from_the_start_is_quiet_and_a_full_one_is_named(store_url: str) -> None:
    assert baton("run", PLAN, "--input", TRIP, "--goal-id", "trip", store=store_url).code == 0
    for args in (["status", "trip"], ["export", "trip"]):
        # no reader at all, as with a reader gone: nothing to say, the command's own code
        closed = _with_stdout(">&-", *args, store=store_url)
        assert (closed.returncode, closed.stderr) == (0, ""), args
        # output someone wanted was lost: one line naming stdout, not the store, not a bug
        full = _with_stdout(">/dev/full", *args, store=store_url)
        assert (full.returncode, full.stderr) == (
            2, "baton: error: cannot write to standard output: No space left on device\n"), args


@pytest.mark.parametrize("command", ["run", "submit"])
@pytest.mark.parametrize("goal_id", ["", "  ", "two\nlines", ".", "..", "g" * 1001])
def test_a_goal_id_that_cannot_be_one_is_refused_and_creates_nothing(
    tmp_path: Path, command: str, goal_id: str
) -> None:
    db = tmp_path / "baton.db"
    result = baton(command, PLAN, "--input", TRIP, "--goal-id", goal_id, store=f"sqlite:///{db}")
    assert result.code == 2 and "--goal-id" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not db.exists()


def test_a_command_that_creates_no_goal_creates_no_sqlite_file(tmp_path: Path) -> None:
    """Run in the wrong directory, `status` made an empty baton.db there and showed no goals,
    hiding where the goals were; now a read says there is no store, a goal's command that
    there is no such goal, and nothing is left behind. `run` still makes the file."""
    db = tmp_path / "baton.db"
    store = f"sqlite:///{db}"
    no_store = (f"baton: error: store {store}: there is no file {str(db)!r}: nothing has been "
                "recorded there (--store or $BATON_STORE names the store)\n")
    for args in (["status"], ["stats"], ["escalations"], ["projections", "status"]):
        result = baton(*args, store=store)
        assert (result.code, result.err) == (2, no_store), args
    for args in (["status", "g"], ["audit", "g"], ["replay", "g"], ["export", "g"],
                 ["graph", "g"], ["fork", "g", "--at", "2"], ["resume", "g"],
                 ["cancel", "g", "--reason", "x"]):
        result = baton(*args, store=store)
        assert (result.code, result.err) == (2, "baton: error: no goal 'g' in this store\n"), args
    assert not db.exists()
    assert baton("run", PLAN, "--input", TRIP, "--goal-id", "g", store=store).code == 0
    assert baton("status", "g", store=store).code == 0


@pytest.mark.postgres
def test_a_command_that_creates_no_goal_creates_no_postgres_schema(pg_base: str) -> None:
    """A misspelt `?schema=` made `status` create the schema and its tables and list no goals,
    as the SQLite file did in the wrong directory; now it is refused the same way."""
    import psycopg

    schema = f"qa_typo_{uuid.uuid4().hex[:8]}"
    store = f"{pg_base}?schema={schema}"
    no_store = (f"baton: error: store {store}: schema {schema!r} of database 'test' has no "
                "Baton tables: nothing has been recorded there (--store or $BATON_STORE names "
                "the store)\n")
    try:
        for args in (["status"], ["stats"], ["escalations"], ["projections", "status"]):
            result = baton(*args, store=store)
            assert (result.code, result.err) == (2, no_store), args
        for args in (["status", "g"], ["audit", "g"], ["resume", "g"]):
            result = baton(*args, store=store)
            assert (result.code, result.err) == (2, "baton: error: no goal 'g' in this store\n")
        with psycopg.connect(pg_base) as conn:
            found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                 (schema,)).fetchone()
        assert found is None
        assert baton("submit", PLAN, "--input", TRIP, "--goal-id", "g", store=store).code == 0
        assert baton("status", "g", store=store).code == 0
    finally:
        with psycopg.connect(pg_base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_an_empty_store_url_is_refused_not_taken_for_the_default(tmp_path: Path) -> None:
    # `--store "$STORE"` with the variable unset silently meant $BATON_STORE or ./baton.db.
    result = baton("--store", "", "status", env={"BATON_STORE": f"sqlite:///{tmp_path}/b.db"})
    assert (result.code, result.err) == (
        2, "baton: error: store URL is empty: leave it out for $BATON_STORE, then "
           "sqlite:///baton.db\n")


def test_a_url_of_an_unsupported_scheme_is_quoted_without_its_password() -> None:
    result = baton("status", store="postgresql+psycopg://u:s3cret@h/db")
    assert result.code == 2 and "unsupported scheme 'postgresql+psycopg'" in result.err
    assert "s3cret" not in result.err and "u:***@h" in result.err


def test_an_invalid_goal_input_creates_no_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "baton.db"
    result = baton("run", PLAN, "--input", '{"origin": "LHR"}', store=f"sqlite:///{db}")
    assert result.code == 2 and "goal input does not satisfy TripRequest" in result.err
    assert not db.exists()


def test_export_creates_the_directory_it_writes_into(store_url: str, tmp_path: Path) -> None:
    assert baton("run", PLAN, "--input", TRIP, "--goal-id", "trip", store=store_url).code == 0
    target = tmp_path / "runs" / "2026" / "trip.jsonl"
    result = baton("export", "trip", "-o", str(target), store=store_url)
    assert result.code == 0, result.err
    assert baton("replay", str(target)).code == 0


def test_version_is_the_installed_one() -> None:
    result = baton("--version")
    assert result.code == 0 and result.out.strip() == f"baton {baton_package.__version__}"


@pytest.fixture
def pg_base() -> str:
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    return PG_URL.split("?")[0]


@pytest.mark.postgres
def test_postgres_url_parameters_reach_libpq(postgres_url: str) -> None:
    from baton.store.eventstore import open_store

    open_store(postgres_url).close()  # a store to read: `status` creates none
    name = f"baton-{uuid.uuid4().hex[:8]}"
    ok = baton("status", store=f"{postgres_url}&application_name={name}&sslmode=disable")
    assert ok.code == 0, ok.err
    # This server has no TLS: a dropped sslmode=require would have connected.
    refused = baton("status", store=f"{postgres_url}&sslmode=require")
    assert refused.code == 2 and "SSL" in refused.err
    assert len(refused.err.strip().splitlines()) == 1


def test_a_percent_encoded_space_in_a_postgres_parameter_reaches_libpq_as_a_space() -> None:
    from baton.store.postgres import parse_postgres_url

    params, schema = parse_postgres_url(
        "postgresql://u@h/db?schema=s&options=-c%20statement_timeout%3D5&application_name=a%20b"
    )
    assert (params["options"], params["application_name"], schema) == (
        "-c statement_timeout=5", "a b", "s")  # not "-c+statement_timeout=5"


@pytest.mark.parametrize("query", ["schema=", "schema=%20", "schema=a&schema=b"])
def test_an_empty_or_doubled_schema_is_refused_not_public(query: str) -> None:
    result = baton("status", store=f"postgresql://nobody@127.0.0.1:1/db?{query}")
    assert result.code == 2 and "schema is" in result.err  # before any connection is tried
    assert result.err.count("\n") == 1


@pytest.mark.postgres
def test_an_unknown_postgres_parameter_is_one_line(pg_base: str) -> None:
    result = baton("status", store=f"{pg_base}?sslmod=require")
    assert result.code == 2 and '"sslmod"' in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err


@pytest.mark.postgres
def test_a_missing_postgres_database_is_named(pg_base: str) -> None:
    missing = f"{pg_base.rsplit('/', 1)[0]}/no_such_db_{uuid.uuid4().hex[:6]}"
    result = baton("status", store=missing)
    assert result.code == 2
    assert result.err.strip().endswith(f'database "{missing.rsplit("/", 1)[1]}" does not exist')
    assert result.err.count("\n") == 1


@pytest.mark.postgres
def test_a_schema_that_does_not_exist_yet_is_created_on_first_use(pg_base: str) -> None:
    # The docs' own try-out URL (`?schema=NAME`) on a fresh database: the tables are "created on
    # first use", so their schema is too; it was `schema "…" does not exist LINE 1: CREATE…`.
    import psycopg

    schema = f"qa_new_{uuid.uuid4().hex[:8]}"
    url = f"{pg_base}?schema={schema}"
    try:
        run = baton("run", PLAN, "--input", TRIP, "--goal-id", "trip", store=url)
        assert run.code == 0, run.err
        listed = baton("status", store=url)
        assert listed.code == 0 and "trip" in listed.out
    finally:
        with psycopg.connect(pg_base, autocommit=True) as conn:
            conn.execute(f'drop schema if exists "{schema}" cascade')


def test_store_given_after_the_command_says_it_goes_before(tmp_path: Path) -> None:
    # `baton run PLAN --store URL`, the order most CLIs accept, was "unrecognized arguments:
    # --store sqlite:///…" with nothing saying where --store belongs.
    url = f"sqlite:///{tmp_path / 'b.db'}"
    for args in (["run", PLAN, "--input", TRIP, "--store", url], ["status", f"--store={url}"]):
        result = baton(*args)
        assert result.code == 2
        assert result.err.count("\n") == 1
        assert ("--store is a global option: give it before the command (baton --store URL "
                "COMMAND …)") in result.err, result.err
    assert not (tmp_path / "b.db").exists()


def test_a_postgres_url_without_host_or_user_uses_the_documented_defaults() -> None:
    # docs/reference.md, "Store URLs": host defaults to 127.0.0.1, port 5432, user $PGUSER or
    # postgres. `postgresql:///db` was refused: 'missing "=" after "postgresql:/db"'.
    from baton.store.postgres import parse_postgres_url

    for url in ("postgresql:///db?schema=s", "postgres:///db", "postgresql:///db?sslmode=disable"):
        params, _ = parse_postgres_url(url)
        assert params["dbname"] == "db", url
    assert parse_postgres_url("postgresql:///db?sslmode=disable")[0]["sslmode"] == "disable"


@pytest.mark.postgres
def test_a_postgres_url_without_host_reaches_the_default_server(postgres_url: str) -> None:
    from baton.store.eventstore import open_store

    open_store(postgres_url).close()  # a store to read: `status` creates none
    hostless = "postgresql:///" + postgres_url.split("/", 3)[3]  # db?schema=…, no user or host
    assert hostless.startswith("postgresql:///") and "@" not in hostless
    result = baton("status", store=hostless, env={"PGUSER": "postgres"})
    assert result.code == 0, result.err
