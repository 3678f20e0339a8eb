"""Execute the report notebooks headless and rewrite their outputs.

The notebooks' sources are the Jupytext ``percent`` scripts in ``notebooks/src/``
(reviewable diffs); this script turns each into ``notebooks/<name>.ipynb``,
executes it with ``nbclient`` in a fresh kernel whose working directory is
``notebooks/``, and saves it with its outputs. A cell tagged ``parameters`` holds
the defaults; ``--param KEY=VALUE`` (or :func:`execute`'s ``params``) adds a cell
after it that overrides them, as papermill does.

    python notebooks/run.py                 # all notebooks (make notebooks)
    python notebooks/run.py 3_evaluation    # one
    python notebooks/run.py 3_evaluation --param LIMIT=60 --out /tmp/nb
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent
SOURCE_DIR = NOTEBOOK_DIR / "src"


@dataclass(frozen=True)
class Notebook:
    """One output notebook: its name, its source script and the parameters it runs with."""

    name: str
    source: str
    params: dict = field(default_factory=dict)


NOTEBOOKS = (
    Notebook("1_data", "data.py"),
    Notebook("2a_training_male", "training.py", {"GENDER": "male"}),
    Notebook("2b_training_female", "training.py", {"GENDER": "female"}),
    Notebook("3_evaluation", "evaluation.py"),
    Notebook("4_baselines_and_clusters", "baselines.py"),
    Notebook("5_noise_reduction", "noise_reduction.py"),
    Notebook("6_new_corpora", "new_corpora.py"),
    Notebook("7_emotion_encoder", "emotion_encoder.py"),
)


class NotebookFailed(RuntimeError):
    """A cell raised; the message names the notebook and the cell."""


def build(notebook: Notebook, params: dict | None = None):
    """The ``nbformat`` notebook for ``notebook``, with parameters injected after the ``parameters`` cell."""
    import jupytext
    import nbformat

    nb = jupytext.read(SOURCE_DIR / notebook.source)
    values = {**notebook.params, **(params or {})}
    if values:
        cell = nbformat.v4.new_code_cell(
            "# Parameters injected by notebooks/run.py\n" + "\n".join(f"{k} = {v!r}" for k, v in values.items()),
            metadata={"tags": ["injected-parameters"]},
        )
        position = next((i + 1 for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), 0)
        nb.cells.insert(position, cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    return nb


def execute(notebook: Notebook | str, *, params: dict | None = None, out_dir: Path = NOTEBOOK_DIR,
            timeout: int = 3600) -> Path:
    """Build, execute and save one notebook; returns the ``.ipynb`` path. Raises :class:`NotebookFailed`."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    if isinstance(notebook, str):
        notebook = next(n for n in NOTEBOOKS if n.name == notebook)
    nb = build(notebook, params)
    env_before = dict(os.environ)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["PYTHONPATH"] = os.pathsep.join([str(NOTEBOOK_DIR.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{notebook.name}.ipynb"
    try:
        client.execute()
    except CellExecutionError as exc:
        nbformat.write(nb, target)
        raise NotebookFailed(f"{notebook.name}: a cell failed (partial output in {target}):\n{exc}") from None
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    nbformat.write(nb, target)
    return target


def _parse_param(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python notebooks/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"notebooks to run (default all: {', '.join(n.name for n in NOTEBOOKS)})")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    parser.add_argument("--out", type=Path, default=NOTEBOOK_DIR, help="folder for the executed .ipynb files")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {n.name for n in NOTEBOOKS}
    if unknown:
        parser.error(f"unknown notebook(s): {', '.join(sorted(unknown))}")
    params = dict(_parse_param(p) for p in args.param)
    for notebook in NOTEBOOKS:
        if args.names and notebook.name not in args.names:
            continue
        start = time.perf_counter()
        print(f"running {notebook.name} ...", file=sys.stderr, flush=True)
        try:
            path = execute(notebook, params=params, out_dir=args.out)
        except NotebookFailed as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"  wrote {path} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(NOTEBOOK_DIR.parent))
    raise SystemExit(main())
