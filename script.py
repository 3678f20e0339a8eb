#!/usr/bin/env python
"""Score audio files or folders to a CSV: one row per audio file, whatever happens to it.

    python script.py FOLDER_FILE_OR_URI... [--list PATHS.txt] -o OUT.csv [--recursive]
        [--gender-model HUB_ID_OR_DIR] [--routing hard|soft] [--device cpu|cuda]
        [--engine local|ray [--ray-address auto|HOST:PORT] [--ray-actors N] [--ray-cpus-per-actor C]]
        [--segments | --group none|folder|voice]

``--group folder`` takes the files of each folder as one speaker, ``--group voice`` clusters all
files by voice (GE2E embeddings, :mod:`pipeline.grouping`); each speaker's gender is then decided
over all its speech and routes the emotion of every file of it (column ``voice``; ``gender`` and
``gender_confidence`` are the voice's). The emotion stays each clip's own: emotion relative to the
voice's baseline was measured and rejected (``studies/voice_baseline``). The grouping runs after
the scoring, on this machine, then rewrites the CSV at once (``--resume`` redoes it).

``--segments`` writes one row per speech segment instead (who speaks when, with which emotion:
:func:`pipeline.recording.analyse_recording`, columns :data:`pipeline.segments_csv.SEGMENT_COLUMNS`);
a file that cannot be analysed still gets exactly one row with its status. On Ray, each recording is analysed whole by one model actor.

``--engine local`` (default) scores on this machine; ``--engine ray`` spreads the same
work over a Ray cluster (``pip install -r requirements-ray.txt``; see docs/ray.md) and
writes the same rows.

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
    from pipeline.audio import AUDIO_EXTENSIONS  # numpy only: cheap next to the models
    from pipeline.recording import VOICE_MODES  # no model is loaded by importing it

    parser = argparse.ArgumentParser(
        prog="script.py",
        description="Predict speaker gender and emotion for audio files; write one CSV row per file.",
        epilog="Exit codes: 0 all ok, 1 some files failed (CSV still complete), 2 usage/set-up error.",
    )
    parser.add_argument("inputs", nargs="*", metavar="FOLDER_FILE_OR_URI",
                        help=f"audio files and/or folders ({' '.join(AUDIO_EXTENSIONS)}, any case), or URIs that "
                             "pyarrow reads (s3://bucket/folder, gs://..., file:///...)")
    parser.add_argument("--list", dest="lists", action="append", default=[], type=Path, metavar="PATHS_TXT",
                        help="a text file naming one audio path or URI a line (relative to the list's folder); "
                             "a missing file gets a not_found row. Repeatable")
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
    parser.add_argument("--group", choices=("none", "folder", "voice"), default="none",
                        help="none: every file alone (default); folder: the files of a folder are one speaker; "
                             "voice: files clustered by voice (GE2E). A speaker's gender is decided over all its "
                             "files and routes each file's emotion (column voice). Emotion stays per clip: "
                             "voice-relative emotion was measured and rejected (studies/voice_baseline)")
    parser.add_argument("--segments", action="store_true",
                        help="one row per speech segment (voice, its gender, the segment's emotion) instead of "
                             "per file; for recordings of several speakers. Local engine, one process")
    parser.add_argument("--voices", choices=tuple(VOICE_MODES), default="auto",
                        help="with --segments, how voices are found. auto (default): suits single speakers and "
                             "speakers recorded apart; room: a conversation of several people recorded in one room "
                             "(meetings, interviews): finds more of the voices, but splits more single-speaker "
                             "recordings into two voices (docs/speakers.md)")
    ray = parser.add_argument_group("engine", "where the work runs (see docs/ray.md)")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: this machine (--jobs processes); ray: a Ray cluster, decoding and features in "
                          "Ray tasks, the models in a pool of actors (default: local)")
    ray.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                     help="Ray cluster to join (auto: the one started on this machine by `ray start`); "
                          "default: start a private Ray on this machine for the run")
    ray.add_argument("--ray-actors", type=int, default=None, metavar="N",
                     help="model actors, each loading the models once (default: a quarter of the cluster's CPUs, "
                          "at least 1)")
    ray.add_argument("--ray-cpus-per-actor", type=float, default=1.0, metavar="C",
                     help="CPUs reserved by each model actor; its torch threads (default 1)")
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
    if not args.inputs and not args.lists:
        return _usage("give audio files, folders or URIs, or --list PATHS_TXT")
    if args.engine != "ray" and (args.ray_address or args.ray_actors is not None):
        return _usage("--ray-address and --ray-actors need --engine ray")
    if (args.ray_actors is not None and args.ray_actors < 1) or args.ray_cpus_per_actor <= 0:
        return _usage("--ray-actors must be at least 1 and --ray-cpus-per-actor above 0")
    if args.segments and args.group != "none":
        return _usage("--group is for one row per file; --segments already gives each segment its voice")
    if args.voices != "auto" and not args.segments:
        return _usage("--voices is for --segments (one row per speech segment, with its voice)")

    from pipeline import batch

    try:
        files = batch.discover(args.inputs, recursive=args.recursive, lists=args.lists)
    except FileNotFoundError as exc:
        return _usage(str(exc))
    out_real = os.path.realpath(out)  # realpath, unlike Path.resolve, tolerates symlink loops
    files = [f for f in files if os.path.realpath(f.path) != out_real]
    if not files:
        return _usage("no audio files found" + ("" if args.recursive else " (use --recursive for sub-folders)"))
    if args.segments:
        return _run_segments(files, out, args)
    done: dict[str, dict[str, str]] = {}
    if args.resume:
        try:
            done = batch.read_done(out)
        except ValueError as exc:
            return _usage(str(exc))
        if done:
            batch.rewrite(out, done.values())  # drop a row cut short by a kill
    todo = [f for f in files if f.name not in done]

    out.parent.mkdir(parents=True, exist_ok=True)
    rows = dict(done)
    try:
        if args.engine == "ray":
            code = _run_ray(todo, files, out, rows, args)
        else:
            code = _run_local(todo, files, out, rows, args)
        if code is not None:
            return code
    except KeyboardInterrupt:
        print(f"\nscript.py: interrupted; {len(rows)} of {len(files)} rows are in {out}. "
              "Run the same command with --resume to finish.", file=sys.stderr)
        return EXIT_INTERRUPTED
    ordered = [rows[f.name] for f in files]
    final = ordered
    if args.group != "none" or any(row["voice"] for row in ordered):  # grouped, or grouped by an earlier run
        try:
            final = _group(files, rows, args)
        except KeyboardInterrupt:
            print(f"\nscript.py: interrupted while grouping; all {len(files)} rows are in {out}, not grouped yet. "
                  "Run the same command with --resume to finish.", file=sys.stderr)
            return EXIT_INTERRUPTED
        if isinstance(final, int):
            return final
    if done or args.engine == "ray" or final != ordered:  # the stable order of an uninterrupted local run
        batch.rewrite(out, final)
    failed = sum(1 for f in files if rows[f.name]["status"] != "ok")
    print(f"{len(files) - failed} of {len(files)} files ok; results in {out}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _model_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR

    return args.male_model or MALE_MODEL_DIR, args.female_model or FEMALE_MODEL_DIR


def _run_local(todo, files, out: Path, rows: dict, args: argparse.Namespace) -> int | None:
    """Score on this machine; ``None`` when done, else an exit code (models that do not load)."""
    from pipeline import batch
    from pipeline.cascade import Cascade
    from pipeline.errors import PipelineError

    male_dir, female_dir = _model_dirs(args)
    # Decoding starts in the worker processes now, while this process loads the models.
    settings = batch.FeatureSettings.from_model_dirs(male_dir, female_dir, denoise=args.denoise)
    with batch.LocalEngine(todo, settings, batch_size=args.batch_size, jobs=args.jobs) as engine:
        try:
            cascade = Cascade.load(args.gender_model, male_dir=male_dir, female_dir=female_dir,
                                   routing=args.routing, device=args.device, denoise=args.denoise)
        except PipelineError as exc:
            return _usage(f"could not load the models: {exc}")
        args.loaded_cascade = cascade  # the grouping pass reuses its emotion models
        results = ((item, batch.prediction_row(prediction, name=item.name))
                   for item, prediction in engine.results(cascade))
        _write(results, todo, files, out, rows, args)
    return None


def _ray_parts(args: argparse.Namespace):
    """``(pipeline.ray_engine, ModelSpec, RaySettings)`` of ``--engine ray``, or an exit code (no Ray, no models)."""
    try:
        from pipeline import ray_engine
    except ImportError as exc:
        return _usage(f"--engine ray needs Ray: pip install -r requirements-ray.txt ({exc})")
    from pipeline.errors import PipelineError

    male_dir, female_dir = _model_dirs(args)
    try:
        spec = ray_engine.ModelSpec.from_args(args.gender_model, male_dir=male_dir, female_dir=female_dir,
                                              routing=args.routing, device=args.device, denoise=args.denoise)
    except PipelineError as exc:
        return _usage(f"could not load the models: {exc}")
    settings = ray_engine.RaySettings(address=args.ray_address, actors=args.ray_actors,
                                      cpus_per_actor=args.ray_cpus_per_actor, batch_size=args.batch_size,
                                      progress=not args.quiet)
    return ray_engine, spec, settings


def _run_ray(todo, files, out: Path, rows: dict, args: argparse.Namespace) -> int | None:
    """Score on a Ray cluster; ``None`` when done, else an exit code (no Ray, no cluster, no models)."""
    parts = _ray_parts(args)
    if isinstance(parts, int):
        return parts
    ray_engine, spec, settings = parts
    try:
        with ray_engine.RayEngine(spec, settings) as engine:
            _write(engine.rows(todo), todo, files, out, rows, args)
    except ray_engine.EngineError as exc:
        return _usage(str(exc) + (f"; {len(rows)} of {len(files)} rows are in {out}, --resume finishes the job"
                                  if rows else ""))
    return None


def _group(files, rows: dict, args: argparse.Namespace) -> list[dict[str, str]] | int:
    """``--group``: the rows in input order, grouped and routed by voice; an exit code if models fail to load."""
    from tqdm import tqdm

    from pipeline import batch, grouping
    from pipeline.emotion import EmotionModel
    from pipeline.errors import PipelineError

    cascade = getattr(args, "loaded_cascade", None)
    male_dir, female_dir = _model_dirs(args)
    settings = (batch.FeatureSettings.of(cascade) if cascade is not None
                else batch.FeatureSettings.from_model_dirs(male_dir, female_dir, denoise=args.denoise))
    if settings is None:
        return _usage(f"could not read the emotion models' config.json in {male_dir} and {female_dir}")

    def emotion_models():
        if cascade is not None:
            return cascade.emotion_models
        return {"male": EmotionModel.load(male_dir), "female": EmotionModel.load(female_dir)}

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = tqdm(total=total, desc=stage, unit="file", file=sys.stderr, disable=args.quiet,
                               dynamic_ncols=True)
        bars[stage].update(done - bars[stage].n)

    try:
        result = grouping.group_rows(files, rows, args.group, routing=args.routing, settings=settings,
                                     emotion_models=emotion_models, jobs=args.jobs, batch_size=args.batch_size,
                                     progress=progress)
    except PipelineError as exc:
        return _usage(f"could not load the models for --group: {exc}")
    finally:
        for bar in bars.values():
            bar.close()
    for name, reason in result.problems.items():
        print(f"script.py: warning: {name} could not be read again for grouping ({reason}); its row is left as "
              "it was", file=sys.stderr)
    if args.group != "none":
        print(f"{len(result.voices)} voice(s) by {args.group}; {len(result.rerouted)} file(s) re-routed to their "
              f"voice's gender; grouping took {result.seconds:.1f} s", file=sys.stderr)
    return result.rows


def _write(results, todo, files, out: Path, rows: dict, args: argparse.Namespace) -> None:
    """Append each ``(file, row)`` of ``results`` to ``out`` as it comes, flushed (and to ``rows``)."""
    from tqdm import tqdm

    from pipeline import batch

    with batch.CsvSink(out, append=args.resume) as sink, tqdm(
        total=len(files), initial=len(files) - len(todo), unit="file", file=sys.stderr,
        disable=args.quiet, dynamic_ncols=True,
    ) as progress:
        for item, row in results:
            sink.write(row)
            rows[item.name] = row
            progress.update(1)


def _run_segments(files, out: Path, args: argparse.Namespace) -> int:
    """``--segments``: analyse each file as a recording; all its rows written together, in time order."""
    from pipeline import segments_csv

    done: dict[str, list[dict[str, str]]] = {}
    if args.resume:
        try:
            done = segments_csv.read_segments_done(out)
        except ValueError as exc:
            return _usage(str(exc))
        segments_csv.rewrite_segments(out, (row for rows in done.values() for row in rows))  # drop the last file
    todo = [f for f in files if f.name not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    results = dict(done)
    try:
        if args.engine == "ray":
            code = _write_segments_ray(todo, files, out, results, args)
            if code is not None:
                return code
        else:
            try:
                models = _segment_models(args)
            except Exception as exc:  # noqa: BLE001 - any model that does not load is a set-up error
                return _usage(f"could not load the models: {exc}")
            _write_segments(todo, files, out, results, models, args)
    except KeyboardInterrupt:
        print(f"\nscript.py: interrupted; {len(results)} of {len(files)} files are in {out}. "
              "Run the same command with --resume to finish.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if done or args.engine == "ray":  # restore the order of an uninterrupted local run
        segments_csv.rewrite_segments(out, (row for f in files for row in results[f.name]))
    failed = sum(1 for f in files if results[f.name][0]["voice"] == "")  # a file-level status: its one row
    n_rows = sum(len(results[f.name]) for f in files)
    print(f"{len(files) - failed} of {len(files)} files analysed, {n_rows} rows; results in {out}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _segment_models(args: argparse.Namespace):
    """``(cascade, vad, speaker encoder)``, loaded once for the run."""
    from pipeline.cascade import Cascade
    from pipeline.speaker_encoder import SpeakerEncoder
    from pipeline.vad import SileroVad

    male_dir, female_dir = _model_dirs(args)
    cascade = Cascade.load(args.gender_model, male_dir=male_dir, female_dir=female_dir, routing=args.routing,
                           device=args.device, denoise=args.denoise)
    return cascade, SileroVad(), SpeakerEncoder()


def _write_segments(todo, files, out: Path, results: dict, models, args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from pipeline import segments_csv

    cascade, vad, encoder = models
    with segments_csv.SegmentSink(out, append=args.resume) as sink, tqdm(
        total=len(files), initial=len(files) - len(todo), unit="file", file=sys.stderr,
        disable=args.quiet, dynamic_ncols=True,
    ) as progress:
        for item in todo:
            def segment_progress(done: int, total: int) -> None:
                progress.set_postfix_str(f"{item.name}: segment {done}/{total}", refresh=True)

            rows = segments_csv.analyse_input(cascade, item, vad=vad, encoder=encoder, batch_size=args.batch_size,
                                              progress=segment_progress, voices=args.voices)
            sink.write_file(rows)
            results[item.name] = rows
            progress.update(1)


def _write_segments_ray(todo, files, out: Path, results: dict, args: argparse.Namespace) -> int | None:
    """``--segments --engine ray``: one recording per actor call; ``None`` when done, else an exit code."""
    from tqdm import tqdm

    from pipeline import segments_csv

    parts = _ray_parts(args)
    if isinstance(parts, int):
        return parts
    ray_engine, spec, settings = parts
    try:
        with ray_engine.RayEngine(spec, settings) as engine, segments_csv.SegmentSink(out, append=args.resume) as sink, \
                tqdm(total=len(files), initial=len(files) - len(todo), unit="file", file=sys.stderr,
                     disable=args.quiet, dynamic_ncols=True) as progress:
            for item, rows in engine.segment_rows(todo, voices=args.voices):
                sink.write_file(rows)
                results[item.name] = rows
                progress.update(1)
    except ray_engine.EngineError as exc:
        return _usage(str(exc) + (f"; {len(results)} of {len(files)} files are in {out}, --resume finishes the job"
                                  if results else ""))
    return None


def _usage(message: str) -> int:
    print(f"script.py: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown of TensorFlow and torch (1-2 s of a cold start).

    Safe here: the CSV is closed and fsynced, worker pools and Ray are shut down by then.
    """
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())
