"""`python -m workbench <command>`: one subcommand per module in `workbench.commands`.

Each command module defines `register(subparsers)`, which adds its parser and sets `func(args) -> int`;
`args.command_line` holds the command as typed, for reports to record. Command modules import their heavy
dependencies inside `func`, so that `--help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import shlex
import sys

from workbench import commands
from workbench.common.errors import WorkbenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"workbench.commands.{info.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = "python -m workbench " + shlex.join(argv)
    try:
        code = args.func(args)
    except WorkbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)
