"""`python -m workbench notebooks`: execute the reproduction notebooks with papermill.

Without options, every notebook of notebooks/ is executed in place with its own parameters (on the sample data:
the executed copies the repository keeps); --quick executes them with small parameters into --output (default:
reports/notebooks/). Names choose some notebooks: 01_complexity, 02_training, 03_evaluation, 04_inside_csw, or their
numbers. A notebook replaces its file only when every cell ran; a failure leaves it unchanged. `-p NAME VALUE`
sets a parameter, as papermill does (e.g. `-p coco_root /data/coco -p epochs None`), so nobody edits cell 0.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.commands import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "notebooks", "execute the reproduction notebooks (in place, or --quick)",
                         __doc__.split("\n\n")[1])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="notebooks to execute, e.g. 02_training or 02 (default: all, in order)")
    parser.add_argument("--quick", action="store_true",
                        help="small parameters (a few images, a tiny training run): all four in about three minutes")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="folder for the executed notebooks (default: notebooks/ itself, or reports/notebooks/ "
                             "with --quick)")
    parser.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="set a notebook parameter (VALUE read as YAML: 10, None, cpu, '[256, 192]'); "
                             "repeatable")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.notebooks.execute import execute_notebooks, parse_parameters

    runs = execute_notebooks(args.names, args.quick, args.output,
                             on_done=lambda done: print(f"{done.name}: {done.seconds:.0f} s -> {done.path}",
                                                        flush=True),
                             parameters=parse_parameters(args.parameters))
    print(f"executed {len(runs)} notebook(s) in {sum(r.seconds for r in runs):.0f} s")
    return 0
