"""`python -m workbench <command>`: one subcommand per module in `workbench.commands`.

Each command module defines `register(subparsers)`, which adds its parser (`workbench.commands.add_command`) and
sets `func(args) -> int`; `args.command_line` holds the command as typed, for reports to record. Command modules
import their heavy dependencies inside `func`, so that `--help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import shlex
import sys

from workbench import commands
from workbench.common.errors import WorkbenchError


DESCRIPTION = ("The Lite CSW-HRNet workbench: models, evaluation, training, reports and the app. "
               "`python -m workbench COMMAND --help` shows a command's options.")


class CommandListFormatter(argparse.HelpFormatter):
    """The top-level help, one line per command: its summary starts after the longest command name (argparse
    measures subcommand names without their indent, which pushes a long name's summary onto a line of its own)."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action.choices, dict) and action.choices:
            indented = self._current_indent + self._indent_increment + max(map(len, action.choices))
            self._action_max_length = max(self._action_max_length, indented)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workbench", description=DESCRIPTION,
                                     formatter_class=CommandListFormatter)
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
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
