"""The command line as a user meets it: `python -m workbench --help` lists every command on one line, every command's
help follows the same rules (defaults printed once, never on flags; no option or command named that is not there),
the command modules stay light to import, and --threads reaches ONNX Runtime."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch

from workbench import cli
from workbench.codec import DECODERS
from workbench.commands import compare, complexity, predict, report
from workbench.common.paths import REPO_ROOT
from workbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from workbench.prediction import api as predict_api
from workbench.reports.evaluation import REPORT_SETS
from workbench.reports.paired import PAIRED_SETS
from workbench.speed.compiled import FAST_VARIANTS
from workbench.zoo import loader


def _commands(parser: argparse.ArgumentParser,
              path: tuple[str, ...] = ()) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """("weights publish", its parser) for every command and action below `parser`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield " ".join((*path, name)), child
                yield from _commands(child, (*path, name))


def _summaries(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Command name -> its one-line summary in the parent's help."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest: choice.help for choice in action._choices_actions}


def _expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """An option's help as `--help` prints it, before line wrapping."""
    return parser.formatter_class(parser.prog)._expand_help(action)


COMMANDS = dict(_commands(cli.build_parser()))


def test_the_top_level_help_lists_every_command_on_one_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    parser = cli.build_parser()
    text = parser.format_help()
    section = text[text.index("\n  COMMAND\n") + len("\n  COMMAND\n"):].split("\n\n")[0].splitlines()
    summaries = _summaries(parser)
    assert len(section) == len(summaries) >= 10  # no summary wraps onto a second line
    for line, (name, summary) in zip(section, summaries.items()):
        assert re.fullmatch(rf"    {re.escape(name)} +{re.escape(summary)}", line), line
    assert {"evaluate", "report", "compare"} <= summaries.keys()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_prints_each_default_once_and_names_only_what_is_there(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    parser = COMMANDS[command]
    assert parser.description and parser.description.strip(), f"{command} has no description"
    assert parser.format_help()  # every help string formats (no stray % placeholders)
    texts = [parser.description]
    options = {option for action in parser._actions for option in action.option_strings}
    for action in parser._actions:
        if not action.help or action.help == argparse.SUPPRESS:
            continue
        text = _expanded_help(parser, action)
        texts.append(text)
        name = "/".join(action.option_strings) or action.dest
        assert "(default: True)" not in text and "(default: False)" not in text, name
        assert "(default: None)" not in text and "(default: [])" not in text, name
        assert text.lower().count("default") <= 1, f"{command} {name}: {text}"
        if action.nargs == 0:
            assert "(default:" not in text, f"{command} {name}: a flag has no default to print"
    for text in texts:
        quoted = re.findall(r"`([^`]*)`", text)
        for mention in re.findall(r"--[a-z][a-z_-]*", re.sub(r"`[^`]*`", "", text)):
            assert mention in options, f"{command} mentions {mention}, which it does not take"
        for snippet in quoted:
            called = re.match(r"python -m workbench ([a-z-]+)(?: ([a-z-]+))?", snippet)
            if called:
                assert called.group(1) in COMMANDS, f"{command} mentions `{snippet}`: no such command"


def test_values_the_help_types_in_agree_with_their_definitions():
    """The help prints these without importing the modules that define them (they import torch)."""
    assert report.SETS == REPORT_SETS and compare.SETS == PAIRED_SETS
    assert complexity.FAST_VARIANTS == FAST_VARIANTS
    options = {action.dest: action for action in COMMANDS["evaluate"]._actions}
    decode_help = _expanded_help(COMMANDS["evaluate"], options["decode"])
    assert all(name in decode_help for name in DECODERS)
    assert " ".join(map(str, IMAGENET_MEAN)) in options["mean"].help
    assert " ".join(map(str, IMAGENET_STD)) in options["std"].help
    assert (predict.DEFAULT_WEIGHTS, predict.DETECTION_THRESHOLD, predict.ENGINES) == \
        (predict_api.DEFAULT_WEIGHTS, predict_api.DETECTION_THRESHOLD, predict_api.ENGINES)


def test_the_command_modules_import_no_heavy_library():
    """`--help` stays fast: building the parser imports neither torch nor onnxruntime nor numpy."""
    finished = subprocess.run(
        [sys.executable, "-c", "import sys; from workbench.cli import build_parser; build_parser(); print(sorted("
                               "m for m in ('torch', 'onnxruntime', 'numpy', 'pandas') if m in sys.modules))"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0 and finished.stdout.strip() == "[]", finished.stdout + finished.stderr


def test_threads_reach_onnx_runtime_and_torch(data_root, stand_in_onnx, tmp_path, monkeypatch):
    loaded, load = [], loader.load

    def recording_load(*arguments, **options):
        loaded.append(load(*arguments, **options))
        return loaded[-1]

    monkeypatch.setattr(loader, "load", recording_load)
    threads = torch.get_num_threads()
    annotations = data_root / "coco-sample" / "test_coco.json"
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main(["evaluate", "--onnx", str(stand_in_onnx), "--annotations", str(annotations), "--images",
                      str(annotations.parent), "--no-flip", "--workers", "0", "--threads", "1", "--output",
                      str(tmp_path / "out")])
        assert exited.value.code == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert loaded[0].session.get_session_options().intra_op_num_threads == 1
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["results"] > 0
