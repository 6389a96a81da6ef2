"""The `sepbench` console script: parse the command line, then import the one subcommand's module
and call its `run(args) -> exit code`. The parsers come from benchmark.commands, which imports
nothing heavy, so `--help` and light commands (validate) never load torch or scipy.signal."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from recipes.errors import SepbenchError, os_error_line

from . import commands

# subcommand -> module implementing it (tests narrow this to the one command they run)
COMMANDS = {name: command.module for name, command in commands.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sepbench", description="Voice/noise separation benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command = commands.COMMANDS[name]
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


class Stopped(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that its cleanup (worker pools, locks, temporary
    files) runs as for Ctrl-C instead of the process vanishing under its workers."""


def _stop(signum, _frame):
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting trailing key=value overrides once options follow the recipe name.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return int(importlib.import_module(COMMANDS[args.command]).run(args) or 0)
    except Stopped:
        print(f"sepbench {args.command}: stopped (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except SepbenchError as exc:
        print(f"sepbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full, read-only or missing disk or path: the user's to fix, in one line
        print(f"sepbench {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sepbench {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
