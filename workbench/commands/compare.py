"""`python -m workbench compare`: two trained weights entries on the same images, with a paired bootstrap.

Evaluates FIRST and SECOND (entries of weights/manifest.json, each at its own input size) on the same images of
each set, and writes their AP difference (first minus second) with a paired bootstrap interval over images into
--output: paired_<FIRST>_vs_<SECOND>.md and .csv. The interval says whether the gap is larger than the choice of
images; it does not cover the spread between training runs.
"""
from __future__ import annotations

import argparse

from workbench.commands import (add_command, add_decode, add_evaluation_options, add_report_output, add_sets,
                                check_decode, positive_int, use_threads)

SETS = ("fashion-pose-val-annotated", "fashion-pose-val")
"""The sets of --sets when not given, as the help prints them: `workbench.reports.paired.PAIRED_SETS`."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "compare", "compare two weights entries: AP gap with a bootstrap interval",
                         __doc__.split(": ", 1)[1])
    parser.add_argument("first", metavar="FIRST", help="weights entry (see `python -m workbench weights list`)")
    parser.add_argument("second", metavar="SECOND", help="weights entry to compare it with")
    add_sets(parser, SETS)
    parser.add_argument("--rounds", type=positive_int, default=1000, metavar="N", help="bootstrap rounds")
    add_decode(parser)
    add_evaluation_options(parser)
    add_report_output(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.codec import DECODERS
    from workbench.common.devices import resolve_device
    from workbench.common.paths import reports_dir
    from workbench.evaluation.sets import evaluation_sets
    from workbench.reports.paired import PAIRED_SETS, paired_table, write_paired_report
    from workbench.zoo.manifest import find_weights

    check_decode(args.decode, DECODERS)
    use_threads(args.threads)
    device = resolve_device(args.device)
    first, second = find_weights(args.first), find_weights(args.second)
    table = paired_table(first, second, evaluation_sets(args.sets or PAIRED_SETS), (args.decode,), flip=args.flip,
                         batch_size=args.batch_size, device=device, rounds=args.rounds)
    for path in write_paired_report(table, first, second, args.output or reports_dir(), args.command_line, args.flip):
        print(f"wrote {path}")
    print(table.to_string(index=False))
    return 0
