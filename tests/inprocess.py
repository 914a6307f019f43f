"""The `baton` command run in this process (its `main`), for tests that try thousands of cases:
a subprocess per case would cost ~0.3 s of start-up each."""

from __future__ import annotations

import contextlib
import io

from baton.cli.main import main
from tests.cli_support import Result


def cli(*args: str) -> Result:
    """Run `baton ARGS...` in-process; a SystemExit from argparse counts as its exit code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    return Result(code, out.getvalue(), err.getvalue())
