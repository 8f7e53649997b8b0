"""`python -m workbench report`: the evaluation report of the project's trained weights.

Evaluates the weights of weights/manifest.json (all, or the named entries) on the standard sets, each at its own
input size with standard and DARK decoding, beside the round trip of each set with ground-truth boxes (the ceiling
its boxes allow), and writes evaluation.md, evaluation.csv, evaluation.png and training_curves.png into --output.
For one model on an annotation file of your own, see `python -m workbench evaluate`.
"""
from __future__ import annotations

import argparse

from workbench.commands import add_command, add_evaluation_options, add_report_output, add_sets, use_threads
from workbench.common.errors import WorkbenchError

SETS = ("fashion-pose-val-annotated", "fashion-pose-val", "coco-sample-gt", "coco-sample")
"""The sets of --sets when not given, as the help prints them: `workbench.reports.evaluation.REPORT_SETS`."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "report", "write the evaluation report of the trained weights",
                         __doc__.split(": ", 1)[1])
    parser.add_argument("entries", nargs="*", metavar="ENTRY",
                        help="weights entries to evaluate (see `python -m workbench weights list`; default: all)")
    add_sets(parser, SETS)
    add_evaluation_options(parser)
    add_report_output(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.common.devices import resolve_device
    from workbench.common.paths import reports_dir
    from workbench.evaluation.sets import evaluation_sets
    from workbench.reports.evaluation import REPORT_SETS, evaluation_table, write_evaluation_report
    from workbench.zoo.manifest import find_weights, read_manifest

    use_threads(args.threads)
    device = resolve_device(args.device)
    entries = [find_weights(name) for name in args.entries] if args.entries else read_manifest()
    if not entries:
        raise WorkbenchError("the weights manifest has no entries yet: train a model (`python -m workbench train`) "
                             "and publish it (`python -m workbench weights publish RUN`) first.")
    table = evaluation_table(entries, evaluation_sets(args.sets or REPORT_SETS), flip=args.flip,
                             batch_size=args.batch_size, device=device)
    for path in write_evaluation_report(table, entries, args.output or reports_dir(), args.command_line, args.flip):
        print(f"wrote {path}")
    print(table.to_string(index=False))
    return 0
