"""Executing the reproduction notebooks (`notebooks/`) with papermill.

In place with their own parameters: the committed, executed copies a reader sees without running anything
(`python -m workbench notebooks`). With `quick`, small parameters into another folder: the test suite, CI, a fast
look. A notebook is executed into a scratch file and replaces its target only once every cell has run; a failed
execution leaves the target as it was and keeps the failed copy (with the traceback) for reading.

Parameters can be given on the command line (`-p name value`, as papermill takes them), so that nobody edits a
notebook's parameters cell. The executed copy records no absolute path of the machine that ran it: papermill's
input and output paths are written relative to the repository (`relative_metadata`).

The kernel is Jupyter's "python3", which must start this interpreter: the kernel spec that ipykernel installs in
this environment does (jupyter_client runs a spec's bare "python" as the interpreter that launches it);
`check_kernel` refuses one that points elsewhere.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.common.errors import WorkbenchError
from workbench.common.files import write_atomic
from workbench.common.paths import REPO_ROOT, reports_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = ("01_complexity", "02_training", "03_evaluation", "04_inside_csw")
KERNEL = "python3"

QUICK_PARAMETERS: dict[str, dict[str, Any]] = {
    "01_complexity": {"models": ["lite_csw_hrnet", "small_hrnet_w16"], "sizes": [[256, 192]], "speed": "quick"},
    "02_training": {"epochs": 2,
                    "overrides": ["model.input_size=[128,96]", "data.subset=32", "validation.subset=8",
                                  "train.batch_size=16", "data.workers=0", "train.warmup_iters=2", "validation.every=1",
                                  "validation.batch_size=8"]},
    "03_evaluation": {"sets": ["coco-sample-gt"], "untrained": ["lite_csw_hrnet"], "flip": False},
    "04_inside_csw": {"sets": ["coco-sample"], "locations": ["stage2/module0/block0/branch0/single",
                                                            "stage3/module0/block0/cross"],
                      "split": "coco-sample", "rounds": 100},
}
"""Small parameters per notebook: every cell runs, on a few images, in well under a minute each."""


@dataclass(frozen=True)
class NotebookRun:
    """One executed notebook: its name, the executed file and the wall time in seconds."""

    name: str
    path: Path
    seconds: float


def notebook_names(names: Sequence[str] = ()) -> list[str]:
    """The notebooks meant by `names` (all if empty), each given whole ("02_training"), by number ("02") or by
    topic ("training"), with or without ".ipynb"."""
    if not names:
        return list(NOTEBOOKS)
    chosen = []
    for name in names:
        key = name.removesuffix(".ipynb")
        found = [n for n in NOTEBOOKS if key in (n, n.split("_", 1)[0], n.split("_", 1)[1])]
        if not found:
            raise WorkbenchError(f"unknown notebook {name!r}. Choose from {', '.join(NOTEBOOKS)} (or their numbers).")
        chosen += [n for n in found if n not in chosen]
    return chosen


def kernel_python(kernel: str = KERNEL) -> Path:
    """The interpreter the Jupyter kernel `kernel` starts (a spec's bare "python" is the running interpreter)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        executable = KernelSpecManager().get_kernel_spec(kernel).argv[0]
    except NoSuchKernel:
        raise WorkbenchError(f"no Jupyter kernel {kernel!r}. Install ipykernel in this environment "
                             f"({sys.executable} -m pip install ipykernel).") from None
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    return Path(sys.executable if executable in bare else executable)


def check_kernel(kernel: str = KERNEL) -> Path:
    """The kernel's interpreter, after checking that it belongs to this environment (the same bin folder as this
    interpreter, links not followed); a WorkbenchError naming the fix otherwise."""
    python = kernel_python(kernel)
    if Path(os.path.abspath(python)).parent != Path(os.path.abspath(sys.executable)).parent:
        raise WorkbenchError(f"the Jupyter kernel {kernel!r} starts {python}, not this environment's "
                             f"{sys.executable}. Install this environment's kernel spec: {sys.executable} -m "
                             "ipykernel install --sys-prefix (or remove the other spec).")
    return python


def notebook_parameters(name: str) -> set[str]:
    """The names notebook `name`'s parameters cell assigns."""
    import ast
    notebook = json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell["source"]))
            return {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                    if isinstance(target, ast.Name)}
    return set()


@contextlib.contextmanager
def _repository_importable() -> Iterator[None]:
    """Let the kernel import `model` and `workbench` from this checkout even when it is not pip-installed."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), saved]))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def parse_parameters(pairs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """`-p name value` pairs as papermill reads them: each value a YAML scalar or list (`10`, `None`, `null`,
    `"[256, 192]"`, `cpu`), a plain string when it does not parse."""
    import yaml

    parameters = {}
    for name, value in pairs:
        if not name.isidentifier():
            raise WorkbenchError(f"notebook parameter {name!r} is not a Python name; write -p NAME VALUE.")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        parameters[name] = None if value == "None" else parsed
    return parameters


def relative_metadata(notebook: dict[str, Any], target: Path) -> dict[str, Any]:
    """`notebook` (nbformat JSON) with papermill's input and output paths relative to the repository, and any
    path inside the repository that an output still prints absolute (the workbench prints them relative:
    `workbench.training.loop.shown`) made relative the same way: the executed copy keeps no absolute path of the
    machine that ran it."""
    record = notebook.get("metadata", {}).get("papermill")
    if record is not None:
        record["input_path"] = _relative(NOTEBOOK_DIR / Path(str(record.get("input_path") or "")).name)
        record["output_path"] = _relative(target)
    prefix = f"{REPO_ROOT.as_posix()}/"
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            for holder, key in [(output, "text"), *((output.get("data", {}), kind) for kind in
                                                    ("text/plain", "text/markdown", "text/html"))]:
                if key in holder:
                    holder[key] = _without_prefix(holder[key], prefix)
    return notebook


def _without_prefix(text: str | list[str], prefix: str) -> str | list[str]:
    """`text` (a string or nbformat's list of lines) with `prefix` removed wherever it occurs."""
    return text.replace(prefix, "") if isinstance(text, str) else [line.replace(prefix, "") for line in text]


def _relative(path: Path) -> str:
    """`path` relative to the repository when inside it, else only its name."""
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name


def execute_notebook(name: str, target: Path, parameters: dict[str, Any]) -> NotebookRun:
    """Execute notebook `name` with `parameters` into `target` (replaced only on success), its metadata free of
    absolute paths (`relative_metadata`)."""
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"workbench-{name}-") as scratch:
        running = Path(scratch) / f"{name}.ipynb"
        if name == "02_training" and target.parent.resolve() != NOTEBOOK_DIR:
            parameters = {**parameters, "run_dir": str(Path(scratch) / "run")}
        started = time.perf_counter()
        try:
            with _repository_importable():
                papermill.execute_notebook(NOTEBOOK_DIR / f"{name}.ipynb", running, parameters=parameters,
                                           kernel_name=KERNEL, cwd=NOTEBOOK_DIR, progress_bar=False)
        except (PapermillExecutionError, DeadKernelError) as error:
            what = (f"in cell {error.exec_count} ({error.ename}: {error.evalue})"
                    if isinstance(error, PapermillExecutionError) else f"(the kernel died: {error})")
            failed = reports_dir() / "notebooks-failed" / f"{name}.ipynb"
            failed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(running, failed)
            raise WorkbenchError(f"notebook {name} failed {what}. {target} is unchanged; the executed copy, with "
                                 f"the traceback, is {failed}.") from None
        seconds = time.perf_counter() - started
        executed = relative_metadata(json.loads(running.read_text(encoding="utf-8")), target)
        running.write_text(json.dumps(executed, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        write_atomic(target, lambda temporary: shutil.copyfile(running, temporary))
    return NotebookRun(name, target, seconds)


def execute_notebooks(names: Sequence[str] = (), quick: bool = False, output: str | Path | None = None,
                      on_done: Callable[[NotebookRun], None] | None = None,
                      parameters: dict[str, Any] | None = None) -> list[NotebookRun]:
    """Execute the notebooks `names` (all if empty), in order: in place in `notebooks/` with their own parameters,
    or into `output` (default with `quick`: <reports>/notebooks); `quick` uses QUICK_PARAMETERS. `on_done` is
    called after each. `parameters` (e.g. from `-p name value`) override each chosen notebook's own (and the quick
    ones); a name no chosen notebook has is refused. Training (02) writes its run into a scratch folder unless it
    executes in place."""
    chosen = notebook_names(names)
    check_kernel()
    folder = Path(output) if output is not None else reports_dir() / "notebooks" if quick else NOTEBOOK_DIR
    parameters = dict(parameters or {})
    if parameters:
        known = set().union(*(notebook_parameters(name) for name in chosen))
        unknown = sorted(set(parameters) - known)
        if unknown:
            raise WorkbenchError(f"no chosen notebook has the parameter(s) {', '.join(unknown)}; theirs are "
                                 f"{', '.join(sorted(known))}.")
    runs = []
    for name in chosen:
        own = {key: value for key, value in parameters.items() if key in notebook_parameters(name)}
        run = execute_notebook(name, folder / f"{name}.ipynb", {**(QUICK_PARAMETERS[name] if quick else {}), **own})
        runs.append(run)
        if on_done is not None:
            on_done(run)
    return runs
