"""`python -m workbench models`: the model zoo at a glance (parameters, output shape, weight-map probes)."""
from __future__ import annotations

import argparse

from workbench.commands import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "models", "list the models with parameters, output shape and probes",
                         __doc__.split(": ", 1)[1].strip())
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"),
                        help="input height and width in pixels (multiples of 32)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from model import build_model, model_names, run_with_probes
    from workbench.common.errors import WorkbenchError
    from workbench.speed.complexity import count_parameters

    size = tuple(args.input_size)
    print(f"{'model':<16} {'parameters':>12}  {'heatmaps':<16} weight maps")
    for name in model_names():
        try:
            with torch.device("meta"):
                model = build_model(name, input_size=size)
                heatmaps, maps = run_with_probes(model, torch.empty(1, 3, *size))
        except ValueError as error:
            raise WorkbenchError(f"{error} (use --input-size H W with multiples of 32, e.g. 256 192)") from None
        params = count_parameters(model)
        print(f"{name:<16} {params:>12,}  {str(tuple(heatmaps.shape[1:])):<16} {len(maps)}")
    return 0
