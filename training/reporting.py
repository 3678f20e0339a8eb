"""Report writing: one helper for every report, the run it came from, and the shared cells.

Every report is ``STEM.json`` (machine-readable) beside ``STEM.md`` (for people),
written by :func:`write_report`. The JSON carries a ``run`` block so any figure can
be traced to what produced it: the exact command line, its arguments, the git
commit (and whether the tree had uncommitted changes), the date and the versions
of the libraries loaded::

    write_report(out / "report", payload, markdown, config=args)            # in a study's main()

Reports committed before this block existed carry only their ``command`` field.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipeline.paths import PROJECT_ROOT

#: Libraries whose version a ``run`` block records when the run had loaded them (never imported here).
VERSIONED = ("numpy", "scipy", "sklearn", "librosa", "torch", "tensorflow", "keras", "pandas", "noisereduce")


def pct(x: float | None, *, missing: str = "n/a") -> str:
    """``0.9234`` -> ``"92.3%"``; ``missing`` for None. The one percentage format of the reports."""
    return missing if x is None else f"{100 * x:.1f}%"


def command_line(module: str | None = None, argv: Sequence[str] | None = None) -> str:
    """The command that ran: ``python -m MODULE ARGS`` (``argv`` default ``sys.argv[1:]``).

    ``module`` defaults to the package run with ``python -m`` (``studies.recipe_cv``,
    from ``__main__``'s spec); otherwise ``python`` and the script path.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if module is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = getattr(spec, "name", None)
        if name:
            module = name.removesuffix(".__main__")
    head = f"python -m {module}" if module else "python " + shlex.quote(sys.argv[0] if sys.argv else "")
    return " ".join([head, shlex.join(args)]).strip()


def git_state(root: Path = PROJECT_ROOT) -> dict:
    """``{"commit": HEAD sha, "dirty": uncommitted changes to tracked files}``; both None outside a git checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _plain(value: Any) -> Any:
    """``value`` as JSON types: paths as strings, tuples and sets as lists, dataclasses and namespaces as dicts."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return _plain(asdict(value))
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return _plain(vars(value))
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def run_record(*, command: str | None = None, config: Any = None) -> dict:
    """The ``run`` block: command line, arguments (an ``argparse.Namespace``, dataclass or dict), git, date, versions."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__version__", None):
            versions[name] = str(module.__version__)
    return {
        "command": command if command is not None else command_line(),
        "config": _plain(config) if config is not None else None,
        "git": git_state(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions,
    }


def write_report(stem: str | Path, payload: Mapping, markdown: str, *, command: str | None = None,
                 config: Any = None) -> Path:
    """Write ``payload`` plus its ``run`` block (:func:`run_record`) to ``STEM.json`` and ``markdown`` to ``STEM.md``.

    ``command`` defaults to this process's command line (:func:`command_line`); ``config``
    is the run's arguments. ``payload`` is not modified; a ``run`` key already in it is
    replaced. Creates the parent folder. Returns the Markdown path.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    record = {**payload, "run": run_record(command=command, config=config)}
    stem.parent.joinpath(stem.name + ".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    path = stem.parent / (stem.name + ".md")
    path.write_text(markdown, encoding="utf-8")
    return path


def gender_training(model: str | Path) -> dict:
    """How a gender model folder was trained, from its ``metadata.json`` (empty for hub ids or bare folders).

    The rows of the "training" table the gender studies print above their results.
    """
    path = Path(model) / "metadata.json"
    if not path.is_file():
        return {}
    tr = json.loads(path.read_text(encoding="utf-8")).get("training", {})
    recal = tr.get("bn_recalibration", {}).get("used")
    channel = tr.get("channel") or {}
    return {
        "noise": " + ".join(tr.get("noise_kinds", ["white"])),
        **({"recording channels": f"{channel['copies']} per clip, p={channel['share']}"} if channel else {}),
        **({"pitch balance": f"power {tr['pitch_balance_power']}"} if tr.get("pitch_balance_power") else {}),
        "fitted on": " + ".join(tr.get("fit_splits", ["train"])),
        "seed": tr.get("seed") if "seeds" not in tr else " + ".join(str(x) for x in tr["seeds"]),
        "epoch kept": f"{tr.get('best_epoch')} of {tr.get('epochs')}",
        "BatchNorm re-estimated on clean crops": "yes" if recal else "no",
    }


def excluded_corpora(model: str | Path) -> list[str]:
    """Corpora a gender model folder was trained without (``[]`` when it saw them all or has no metadata)."""
    path = Path(model) / "metadata.json"
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("training", {}).get("excluded_corpora", []))
