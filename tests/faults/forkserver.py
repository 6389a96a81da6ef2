"""Runs sepbench commands as `python -m benchmark.cli` would, each in a process of its own, forked
from this one after the heavy imports (torch, Lightning) are done: an injected run then costs its
own work, not two to six seconds of imports. Started as

    python tests/faults/forkserver.py MODULE...   (modules to import first)

with tests/faults and the repository on PYTHONPATH. It reads one JSON request per line on stdin,
{"argv": [...], "spec": SEPBENCH_FAULT or null, "roots": [...], "cwd", "stdout", "stderr"}, and
answers each with {"rc": exit status} on stdout. Nothing heavy runs before a fork: only imports,
so no thread pool exists yet to be lost in a child."""
from __future__ import annotations

import atexit
import importlib
import json
import os
import sys
import traceback

import sepbench_faults


def _exit_status(argv: list[str]) -> int:
    """What `python -m benchmark.cli ARGV` would exit with, the traceback of an uncaught
    exception printed as the interpreter prints it."""
    from benchmark import cli  # imported by main() before any fork; this only names it

    sys.argv = [cli.__file__, *argv]
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # as at interpreter exit: among them the injector's report
    return code & 0xFF


def _child(request: dict) -> int:
    os.chdir(request["cwd"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        new = os.open(path, flags, 0o644)
        os.dup2(new, fd)
        os.close(new)
    sepbench_faults.configure(request.get("spec"), request.get("roots", ()))
    try:
        return _exit_status(request["argv"])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main() -> None:
    sepbench_faults.install()
    for name in ["benchmark.cli", *sys.argv[1:]]:
        importlib.import_module(name)
    replies = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        replies.flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                status = _child(request)
            finally:
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        replies.write(json.dumps({"rc": os.waitstatus_to_exitcode(wait_status)}) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
