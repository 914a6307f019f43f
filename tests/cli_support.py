"""Running the real `baton` command in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def baton(*args: str, store: str | None = None, env: dict[str, str] | None = None,
          timeout: float = 120) -> Result:
    full_env = {k: v for k, v in os.environ.items() if k != "BATON_CRASH_AT_EVENT"}
    full_env.update({"COLUMNS": "200", **(env or {})})
    if store is not None:
        full_env["BATON_STORE"] = store
    proc = subprocess.run(
        [sys.executable, "-m", "baton.cli", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
