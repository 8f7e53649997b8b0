"""CLI subcommands, one module each; see `workbench.cli`."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type for counts (threads, repeats, batch sizes): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
