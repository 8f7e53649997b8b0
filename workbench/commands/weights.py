"""`python -m workbench weights`: the project's trained weights (weights/manifest.json).

`list` shows the entries with their recorded validation AP and checks every file's sha256; `publish RUN` turns a
finished training run into an entry: it evaluates the final weights in float32 and float16 on the run's validation
set, stores them compactly, copies the run's log and curves beside them and records the run in the manifest.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.commands import add_command, add_threads, use_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "weights", "list the trained weights, or publish a finished training run",
                         __doc__.split("\n\n")[1])
    actions = parser.add_subparsers(title="actions", dest="action", required=True, metavar="ACTION")
    listing = add_command(actions, "list", "the manifest's entries, their validation AP and a sha256 check")
    listing.set_defaults(func=run_list)
    publish = add_command(actions, "publish", "store a finished run's final weights as a manifest entry",
                          "Evaluates the run's final weights in float32 and float16 on its validation set, stores "
                          "them in weights/ (float16 when --tolerance allows), copies the run's log and curves "
                          "beside them and records the run in weights/manifest.json.")
    publish.add_argument("run", type=Path, help="run folder written by `python -m workbench train`")
    publish.add_argument("--name", help="entry name (default: the run's config name)")
    publish.add_argument("--checkpoint", default="last.pt", metavar="FILE",
                         help="file in the run folder (last.pt: the end of the schedule, chosen without looking at "
                              "validation)")
    publish.add_argument("--tolerance", type=float, default=1e-3,
                         help="largest validation AP change that float16 storage may cause (else float32)")
    add_threads(publish, onnx=False)
    publish.set_defaults(func=run_publish)


def run_list(args: argparse.Namespace) -> int:
    from workbench.common.errors import WorkbenchError
    from workbench.zoo.manifest import read_manifest, verified_path

    entries = read_manifest()
    if not entries:
        print("no trained weights yet: publish a finished run with `python -m workbench weights publish RUN`")
        return 0
    print(f"{'name':<34} {'model':<16} {'input':<8} {'epochs':>6} {'val AP':>7}  file")
    failed = 0
    for entry in entries:
        try:
            status = verified_path(entry).name
        except WorkbenchError as error:
            status, failed = f"FAILED: {error}", failed + 1
        ap = entry.metrics.get("val_AP")
        print(f"{entry.name:<34} {entry.model:<16} {entry.input_size[0]}x{entry.input_size[1]:<4} "
              f"{entry.run.get('epochs', '?'):>6} {'-' if ap is None else f'{ap:.3f}':>7}  {status}")
    return 1 if failed else 0


def run_publish(args: argparse.Namespace) -> int:
    from workbench.training.publishing import publish_run

    use_threads(args.threads)
    entry, ap = publish_run(args.run, args.name, args.checkpoint, args.tolerance)
    print(f"validation AP: float32 {ap['float32']:.4f}, float16 {ap['float16']:.4f}; stored as "
          f"{entry.run['stored_as']}")
    print(f"published {entry.name!r}: weights/{entry.file} (sha256 {entry.sha256[:12]}...), log and curves beside it")
    return 0
