"""The `sepbench` console script: argument parsing only; each subcommand lives in its module
as `add_arguments(parser)` + `run(args) -> exit code`."""
from __future__ import annotations

import argparse
import importlib
import sys

from recipes.errors import SepbenchError

# subcommand -> module implementing it
COMMANDS = {
    "validate": "benchmark.data.validate",
    "demo-data": "benchmark.data.demo",
    "prepare": "benchmark.data.prepare",
    "recipes": "benchmark.recipes_cmd",
    "train": "benchmark.train_cmd",
    "evaluate": "benchmark.evaluate",
    "separate": "benchmark.separate_cmd",
    "export": "benchmark.export_cmd",
    "listen": "benchmark.listen_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sepbench", description="Voice/noise separation benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting trailing key=value overrides once options follow the recipe name.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args._run(args) or 0)
    except SepbenchError as exc:
        print(f"sepbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sepbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
