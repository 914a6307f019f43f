"""The distribution: the wheel installs one import name, `baton`, and the installed CLI runs a
user's project whose own packages are called `domain`, `adapters` and `examples`.

The wheel is built from a copy of the source (with build isolation, as `pip install .` does) and
installed into a fresh virtual environment. Its dependencies are not downloaded again: a `.pth`
file makes this test environment's site-packages visible to it (only its packages: `.pth` files
found there are not processed, so the editable `baton` of the repository stays out of sight).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    if check and done.returncode != 0:
        pytest.fail(f"{args[:3]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh venv with the wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "*.db*", ".*_cache"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", source,
         cwd=tmp)
    (wheel,) = (tmp / "dist").glob("baton-*.whl")
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    (venv_site,) = (venv / "lib").glob("python*/site-packages")
    (venv_site / "test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
         "--no-deps", wheel, cwd=tmp)
    (tmp / "wheel-path").write_text(str(wheel))
    return venv / "bin"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BATON_", "PYTHON", "VIRTUAL_ENV"))}
    return env


def test_the_wheel_holds_one_top_level_package(installed: Path) -> None:
    wheel = Path((installed.parent.parent / "wheel-path").read_text())
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        recorded = [line.split(",")[0] for line in archive.read(record).decode().splitlines()]
    tops = {name.split("/")[0] for name in recorded if ".dist-info/" not in name}
    assert tops == {"baton"}
    assert "baton/py.typed" in names
    assert not any(n.startswith(("baton/examples/", "examples/", "tests/")) for n in names)
    (venv_site,) = (installed.parent / "lib").glob("python*/site-packages")
    assert {p.name for p in venv_site.iterdir() if not p.name.endswith((".dist-info", ".pth"))} \
        == {"baton"}


def test_domain_adapters_examples_are_not_importable_after_install(
    installed: Path, tmp_path: Path
) -> None:
    for name in ("domain", "adapters", "projections", "examples"):
        done = _run(installed / "python", "-c", f"import {name}", cwd=tmp_path, env=_clean_env(),
                    check=False)
        assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr, name
    done = _run(installed / "python", "-c", "import baton; print(baton.__version__)",
                cwd=tmp_path, env=_clean_env())
    assert done.stdout.strip() not in ("", "0+unknown")


def _user_project(root: Path) -> Path:
    """A project with its own `domain`, `adapters` and `examples` packages holding its agents."""
    models = textwrap.dedent("""
        from pydantic import BaseModel

        class Num(BaseModel):
            n: int
    """)
    for package, body in {
        "domain": "def double(inp: Num) -> Num:\n    return Num(n=inp.n * 2)\n",
        "adapters": "def inc(inp: Num) -> Num:\n    return Num(n=inp.n + 1)\n",
        "examples": "async def square(inp: Num) -> Num:\n    return Num(n=inp.n ** 2)\n",
    }.items():
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
        (root / package / "agents.py").write_text(models + "\n\n" + body)
    (root / "plan.yaml").write_text(textwrap.dedent("""
        version: 1
        name: users-own-packages
        agents:
          double: domain.agents:double
          inc: adapters.agents:inc
          square: examples.agents:square
        tasks:
          - {id: double, agent: double, input: {n: $goal.n}}
          - {id: inc, agent: inc, input: {n: $double.n}}
          - {id: square, agent: square, input: {n: $inc.n}}
        output: $square
    """))
    return root


def test_a_project_with_its_own_domain_package_runs_with_the_installed_cli(
    installed: Path, tmp_path: Path
) -> None:
    project = _user_project(tmp_path)
    env = _clean_env() | {"PYTHONPATH": str(project)}  # the project on the path, as users do
    run = _run(installed / "baton", "--store", f"sqlite:///{project}/b.db", "run", "plan.yaml",
               "--input", '{"n": 3}', "--json", cwd=project, env=env)
    result = json.loads(run.stdout)
    assert (result["status"], result["output"]) == ("completed", {"n": 49})
    api = _run(installed / "python", "-c", textwrap.dedent(f"""
        import baton
        with baton.Baton("sqlite:///{project}/b.db") as bt:
            result = bt.run("plan.yaml", {{"n": 1}})
            print(result.status, result.output["n"], len(bt.status()))
    """), cwd=project, env=env)
    assert api.stdout.split() == ["completed", "9", "2"]


def test_the_travel_example_runs_with_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    run = _run(installed / "baton", "--store", f"sqlite:///{tmp_path}/travel.db", "run",
               "examples/travel/plan.yaml", "--input", "@examples/travel/trip.json", "--json",
               cwd=REPO, env=_clean_env())
    assert json.loads(run.stdout)["status"] == "completed"
    status = _run(installed / "baton", "--store", f"sqlite:///{tmp_path}/travel.db", "status",
                  "--json", cwd=REPO, env=_clean_env())
    assert [goal["status"] for goal in json.loads(status.stdout)["goals"]] == ["completed"]
