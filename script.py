#!/usr/bin/env python
"""Score audio files or folders to a CSV: one row per audio file, whatever happens to it.

    python script.py FOLDER_OR_FILES... -o OUT.csv [--recursive]
        [--gender-model HUB_ID_OR_DIR] [--routing hard|soft] [--device cpu|cuda]

Exit codes: 0 every file scored ok; 1 some files failed (the CSV still has a row
for each, with ``status`` and ``error``); 2 usage or set-up error (bad arguments,
existing output without --overwrite/--resume, models that cannot be loaded); 130 interrupted
by Ctrl-C (the rows done are in the CSV; --resume finishes the job).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="script.py",
        description="Predict speaker gender and emotion for audio files; write one CSV row per file.",
        epilog="Exit codes: 0 all ok, 1 some files failed (CSV still complete), 2 usage/set-up error.",
    )
    parser.add_argument("inputs", nargs="+", metavar="FOLDER_OR_FILE",
                        help="audio files and/or folders (.wav .flac .ogg .opus .mp3, any case)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="CSV file to write")
    parser.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    parser.add_argument("--gender-model", default=None, metavar="HUB_ID_OR_DIR",
                        help="gender model: a local folder or a hub id such as JaesungHuh/voice-gender-classifier "
                             "(needs internet); default: the shipped model in gender_model/")
    parser.add_argument("--male-model", type=Path, default=None, metavar="DIR",
                        help="male emotion model folder (default: male_models/)")
    parser.add_argument("--female-model", type=Path, default=None, metavar="DIR",
                        help="female emotion model folder (default: female_models/)")
    parser.add_argument("--routing", choices=("hard", "soft"), default="hard",
                        help="hard: the predicted gender's emotion model answers; soft: both, weighted by the "
                             "gender probabilities (default: hard)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device for the gender model")
    parser.add_argument("--denoise", action="store_true",
                        help="spectral-gating noise reduction (noisereduce) before analysis; off by default, "
                             "see studies/noise_study/report.md for when it helps")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    mode.add_argument("--resume", action="store_true",
                      help="keep the rows of an interrupted run in OUTPUT and score only the missing files")
    parser.add_argument("--batch-size", type=int, default=16, help="files scored per model call (default 16)")
    parser.add_argument("-j", "--jobs", type=int, default=min(os.cpu_count() or 1, 8),
                        help="worker processes for decoding and features; 1 scores in this process only "
                             "(default: the number of CPUs, at most 8)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    out: Path = args.output
    if out.exists() and out.is_dir():
        return _usage(f"output {out} is a folder; give a file name such as {out / 'results.csv'}")
    if out.exists() and not (args.overwrite or args.resume):
        return _usage(f"{out} exists; pass --overwrite to replace it or --resume to finish an interrupted run")
    if args.batch_size < 1:
        return _usage("--batch-size must be at least 1")
    if args.jobs < 1:
        return _usage("--jobs must be at least 1")

    from pipeline import batch
    from pipeline.errors import PipelineError

    try:
        files = batch.discover(args.inputs, recursive=args.recursive)
    except FileNotFoundError as exc:
        return _usage(str(exc))
    out_real = os.path.realpath(out)  # realpath, unlike Path.resolve, tolerates symlink loops
    files = [f for f in files if os.path.realpath(f.path) != out_real]
    if not files:
        return _usage("no audio files found" + ("" if args.recursive else " (use --recursive for sub-folders)"))
    done: dict[str, dict[str, str]] = {}
    if args.resume:
        try:
            done = batch.read_done(out)
        except ValueError as exc:
            return _usage(str(exc))
        if done:
            batch.rewrite(out, done.values())  # drop a row cut short by a kill
    todo = [f for f in files if f.name not in done]

    from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR, Cascade

    try:
        cascade = Cascade.load(
            args.gender_model, male_dir=args.male_model or MALE_MODEL_DIR,
            female_dir=args.female_model or FEMALE_MODEL_DIR, routing=args.routing, device=args.device,
            denoise=args.denoise,
        )
    except PipelineError as exc:
        return _usage(f"could not load the models: {exc}")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = dict(done)
    try:
        _run(cascade, todo, files, out, rows, args)
    except KeyboardInterrupt:
        print(f"\nscript.py: interrupted; {len(rows)} of {len(files)} rows are in {out}. "
              "Run the same command with --resume to finish.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if done:  # restore the stable order of an uninterrupted run
        batch.rewrite(out, (rows[f.name] for f in files))
    failed = sum(1 for f in files if rows[f.name]["status"] != "ok")
    print(f"{len(files) - failed} of {len(files)} files ok; results in {out}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _run(cascade, todo, files, out: Path, rows: dict, args: argparse.Namespace) -> None:
    """Score ``todo`` and append a flushed CSV row per file to ``out`` (and to ``rows``)."""
    from tqdm import tqdm

    from pipeline import batch

    with batch.CsvSink(out, append=args.resume) as sink, tqdm(
        total=len(files), initial=len(files) - len(todo), unit="file", file=sys.stderr,
        disable=args.quiet, dynamic_ncols=True,
    ) as progress:
        for item, prediction in batch.score(cascade, todo, batch_size=args.batch_size, jobs=args.jobs):
            row = batch.prediction_row(prediction, name=item.name)
            sink.write(row)
            rows[item.name] = row
            progress.update(1)


def _usage(message: str) -> int:
    print(f"script.py: error: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
