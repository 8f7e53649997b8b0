"""`python -m workbench train`: train a pose network with the recipe of a config, resumably.

Writes into --output (default: runs/<config name>/): last.pt every epoch (and on Ctrl-C or SIGTERM), best.pt at the
best validation AP, log.jsonl (one line per epoch), training_curves.png, config.yaml, and tensorboard/ if enabled.
For many GPUs or nodes, launch with torchrun, e.g. `torchrun --nproc_per_node 8 -m workbench train --config ...`
(train.batch_size is per process; the start prints the global batch). A stop signal (Ctrl-C, SIGTERM to the process,
to its process group, or to torchrun or a SLURM job) ends the current step and saves last.pt.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.commands import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "train", "train a network from a config (resumable, many GPUs)",
                         __doc__.split("\n\n")[1])
    parser.add_argument("--config", help="YAML file, or the name of a config in workbench/configs (see --list)")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override settings, e.g. train.epochs=5 data.root=/datasets model.input_size=[128,96]")
    parser.add_argument("--output", type=Path, metavar="DIR", help="run folder (default: runs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="", type=str, metavar="CHECKPOINT",
                        help="continue a run: from CHECKPOINT (a file or a run folder), or from <output>/last.pt; "
                             "without --config the checkpoint's own config is used")
    parser.add_argument("--plot", type=Path, metavar="LOG",
                        help="only draw the training curves of a run's log.jsonl into training_curves.png beside it")
    parser.add_argument("--list", action="store_true", help="list the shipped configs and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.common.errors import WorkbenchError
    from workbench.common.paths import REPO_ROOT
    from workbench.training import build_config, config_names, load_config, plot_training, train
    from workbench.training.checkpointing import load_checkpoint
    from workbench.training.loop import CURVES, LAST, shown

    if args.list:
        print("\n".join(config_names()))
        return 0
    if args.plot:
        print(f"wrote {plot_training(args.plot, args.plot.with_name(CURVES))}")
        return 0
    if args.config is None and args.resume is None:
        raise WorkbenchError("pass --config NAME (see --list), or --resume CHECKPOINT to continue a run.")
    checkpoint = None
    if args.resume:
        checkpoint = Path(args.resume)
        if checkpoint.is_dir():
            checkpoint = checkpoint / LAST
    elif args.resume is not None:
        if args.output is None and args.config is None:
            raise WorkbenchError("--resume needs a checkpoint or run folder, or --output or --config to find one.")
        folder = args.output or REPO_ROOT / "runs" / load_config(args.config, args.overrides)["name"]
        checkpoint = folder / LAST
    if args.config:
        config = load_config(args.config, args.overrides)
    else:
        config = build_config(load_checkpoint(checkpoint)["config"], args.overrides, str(checkpoint))
    output = args.output or (checkpoint.parent if checkpoint else REPO_ROOT / "runs" / config["name"])
    result = train(config, output, checkpoint)
    if result.stopped_by is not None:
        return 130 if result.stopped_by == "SIGINT" else 143
    if result.rank != 0:
        return 0
    best = "not validated" if result.best_metric is None else \
        f"best validation AP {100 * result.best_metric:.1f} at epoch {result.best_epoch}"
    print(f"done: {result.epochs_done} epochs, {result.step} steps, {best}; run in {shown(result.output)}")
    return 0
