"""The `baton` command run in this process (its `main`), for tests that try thousands of cases:
a subprocess per case would cost ~0.3 s of start-up each."""

from __future__ import annotations

import contextlib
import functools
import importlib
import io

from tests.cli_support import Result

cli_main = importlib.import_module("baton.cli.main")  # the module (baton.cli.main is main())

# Building the parser costs ~15 ms (argparse looks up translations for every option); the
# parser keeps no state between parse_args calls, so one serves every in-process call.
cli_main.build_parser = functools.cache(cli_main.build_parser)  # type: ignore[method-assign]


def cli(*args: str) -> Result:
    """Run `baton ARGS...` in-process; a SystemExit from argparse counts as its exit code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main.main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    return Result(code, out.getvalue(), err.getvalue())
