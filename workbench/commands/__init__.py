"""CLI subcommands, one module each (see `workbench.cli`), and what they share: the help formatter, argparse types,
and the options that several commands take (defined once here).

Heavy libraries (torch, onnxruntime) are imported inside the functions that run a command, so that `--help` stays
fast; this module imports the standard library and `workbench.common.errors` only.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.common.errors import WorkbenchError


class HelpFormatter(argparse.HelpFormatter):
    """Every command's help: "(default: X)" after each option that takes a value and has a default, written as it
    would be typed (lists space-separated). Flags (--no-flip, --quick) get none: their help says what they change.
    Options whose default is None or empty get none either: their help says what happens without them."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.nargs == 0 or default is None or default == argparse.SUPPRESS or "%(default)" in text
                or (isinstance(default, (list, tuple)) and not default)
                or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            return text
        typed = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {typed.replace('%', '%%')})"


def add_command(subparsers: argparse._SubParsersAction, name: str, summary: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """The parser of command `name`: `summary` is its one line in `python -m workbench --help` (short enough to fit
    there) and heads its own help unless `description` says more."""
    description = (description or summary).strip()
    return subparsers.add_parser(name, help=summary, description=description[:1].upper() + description[1:],
                                 formatter_class=HelpFormatter)


def positive_int(text: str) -> int:
    """argparse type for counts (threads, repeats, batch sizes): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def size_type(text: str) -> tuple[int, int]:
    """argparse type for an input size "HEIGHTxWIDTH" (e.g. 256x192) -> (height, width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input size must be HEIGHTxWIDTH, e.g. 256x192; got {text!r}") from None
    return height, width


def add_threads(parser: argparse.ArgumentParser, default: int | None = None, onnx: bool = True) -> None:
    """--threads N: CPU threads for PyTorch and, with `onnx`, for the command's ONNX Runtime sessions (a command
    passes `args.threads` to them and calls `use_threads`)."""
    engines, choice = ("PyTorch and ONNX Runtime", "each library's") if onnx else ("PyTorch", "PyTorch's")
    unset = "" if default is not None else f" (default: {choice} choice; 1 is often much faster on a busy machine)"
    parser.add_argument("--threads", type=positive_int, default=default, metavar="N",
                        help=f"CPU threads for {engines}{unset}")


def use_threads(threads: int | None) -> None:
    """Apply --threads to PyTorch (ONNX Runtime takes its threads when each session is created)."""
    import torch

    if threads:
        torch.set_num_threads(threads)


def add_device(parser: argparse.ArgumentParser) -> None:
    """--device: where the torch networks run (`workbench.common.devices.resolve_device` reads it)."""
    parser.add_argument("--device", default="auto",
                        help="torch device for the networks: cpu, cuda, cuda:N, or auto (cuda if available)")


def add_evaluation_options(parser: argparse.ArgumentParser, onnx: bool = False) -> None:
    """The options of every command that computes COCO keypoint metrics (evaluate, report, compare): the flip test,
    the batch size, the device and the threads (for ONNX Runtime too with `onnx`)."""
    parser.add_argument("--no-flip", dest="flip", action="store_false",
                        help="skip the flip test (on by default: each crop is also run mirrored and the heatmaps "
                             "averaged)")
    parser.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="crops per forward pass")
    add_device(parser)
    add_threads(parser, onnx=onnx)


def add_decode(parser: argparse.ArgumentParser) -> None:
    """--decode NAME: the heatmap decoder, checked against `workbench.codec.DECODERS` by `check_decode` when the
    command runs (the codec imports torch)."""
    parser.add_argument("--decode", default="standard", metavar="NAME",
                        help="heatmap decoding: standard (quarter-pixel offset toward the higher neighbour) or dark "
                             "(DARK's Taylor refinement)")


def check_decode(decode: str, decoders: tuple[str, ...]) -> None:
    """Refuse an unknown --decode before any work, naming the known `decoders`."""
    if decode not in decoders:
        raise WorkbenchError(f"unknown decoder {decode!r} for --decode. Choose one of: {', '.join(decoders)}.")


def add_sets(parser: argparse.ArgumentParser, defaults: tuple[str, ...]) -> None:
    """--sets NAME ...: named sets of `workbench.evaluation.sets`, `defaults` when not given (the defaults of the
    report modules, which import torch; tests/test_cli.py checks that the two agree)."""
    parser.add_argument("--sets", nargs="+", metavar="SET",
                        help="named sets of workbench.evaluation.sets (an unknown name lists them; default: "
                             f"{' '.join(defaults)})")


def add_report_output(parser: argparse.ArgumentParser) -> None:
    """--output DIR of the report commands."""
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="report folder (default: reports/, or $WORKBENCH_REPORTS)")
