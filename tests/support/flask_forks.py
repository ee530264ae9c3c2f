"""Many `flask --app app …` runs for the price of one start: import the app once, then fork per run.

Each run is a process of its own with its own environment, stdout, stderr and exit status, as a
separate `flask` process would have; only the imports (which read no setting) are shared. A start of
`flask` imports the whole service, about 1.5 s of CPU, so fifty runs cost a minute done apart.

Run as a script: a JSON list of {"env": {...}, "args": [...]} on stdin, a JSON list of
{"returncode", "stdout", "stderr"} on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from typing import Any


def _child(env: dict[str, str], args: list[str], out_fd: int, err_fd: int) -> None:
    """In the forked child: the run, then _exit with its status as the interpreter would end."""
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["flask", *args]
    code = 0
    try:
        from flask.cli import main

        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # as the interpreter does: print it, exit 1
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_all(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import app  # noqa: F401 - imported once, before the forks

    results = []
    for run in runs:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _child(run["env"], run["args"], out.fileno(), err.fileno())
            _, status = os.waitpid(pid, 0)
            out.seek(0)
            err.seek(0)
            results.append(
                {
                    "returncode": os.waitstatus_to_exitcode(status),
                    "stdout": out.read().decode("utf-8", "replace"),
                    "stderr": err.read().decode("utf-8", "replace"),
                }
            )
    return results


if __name__ == "__main__":
    json.dump(run_all(json.load(sys.stdin)), sys.stdout)
