"""Engines of the batch scorer compared: ``python -m pipeline.bench --engine-compare``.

``script.py --engine local`` against ``--engine ray`` (a private Ray on this machine) on the same
inputs, end to end; the per-clip overhead from the steady rates; the scaling to N machines worked
out on paper from the per-clip CPU cost of each stage. Writes ``reports/bench_engines.*``.
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pipeline.paths import PROJECT_ROOT
from training.bench_stages import bench_stages
from training.corpus import read_manifest
from training.reporting import command_line, write_report


def _timed_rows(results, total: int) -> dict:
    """Consume ``total`` ``(file, row)`` results: end-to-end seconds, time to the first row, and the
    steady rate over the second half of the rows (past start-up and past any rows buffered while
    the models were loading)."""
    start = time.perf_counter()
    first = middle = None
    n = ok = 0
    for _, row in results:
        n += 1
        ok += row["status"] == "ok"
        if first is None:
            first = time.perf_counter()
        if n == total // 2:
            middle = time.perf_counter()
    end = time.perf_counter()
    steady = (n - total // 2) / (end - middle) if middle is not None and end > middle else float("nan")
    return {"clips": n, "ok": ok, "seconds": end - start, "first_row_s": (first or end) - start,
            "clips_per_s": n / (end - start), "steady_clips_per_s": steady}


def _run_local(files, batch_size: int, jobs: int) -> dict:
    from pipeline import batch
    from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR, Cascade

    t = time.perf_counter()
    settings = batch.FeatureSettings.from_model_dirs(MALE_MODEL_DIR, FEMALE_MODEL_DIR)
    with batch.LocalEngine(files, settings, batch_size=batch_size, jobs=jobs) as engine:
        result = _timed_rows(((f, batch.prediction_row(p, name=f.name)) for f, p in engine.results(Cascade.load())),
                             len(files))
    return {**result, "seconds": time.perf_counter() - t}


def _run_ray(files, batch_size: int) -> dict:
    import ray

    from pipeline import ray_engine
    from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR

    spec = ray_engine.ModelSpec.from_args(None, male_dir=MALE_MODEL_DIR, female_dir=FEMALE_MODEL_DIR)
    t = time.perf_counter()
    with ray_engine.RayEngine(spec, ray_engine.RaySettings(batch_size=batch_size)) as engine:
        actors, per_actor = engine.plan()
        started = time.perf_counter() - t
        result = _timed_rows(engine.rows(files), len(files))
    return {"version": ray.__version__, "actors": actors, "cpus_per_actor": per_actor, "ray_start_s": started,
            **result, "seconds": time.perf_counter() - t}


def bench_engines(files, *, batch_size: int, repeats: int = 3) -> dict:
    """``script.py --engine local`` against ``--engine ray`` (a private Ray on this machine), same clips.

    Each engine runs end to end ``repeats`` times (models loaded; for Ray, Ray started and its
    actors loaded). The per-clip overhead compares the *steady* rates, clips per second over the
    second half of the rows (free of the start-up costs, which are reported apart as the time to
    the first row), as the median over the repeats. Per-clip costs of each stage (warm, one process) give
    the scaling to N machines on paper.
    """
    from pipeline.cascade import Cascade

    jobs = os.cpu_count() or 1
    out: dict = {"clips": len(files), "batch_size": batch_size, "cpus": jobs, "repeats": repeats}
    _run_local(files[:4], batch_size, jobs)  # warm-up: imports, page cache
    out["local"] = {"jobs": jobs, "runs": [_run_local(files, batch_size, jobs) for _ in range(repeats)]}
    try:
        from pipeline import ray_engine  # noqa: F401
    except ImportError as exc:
        out["ray"] = {"skipped": f"Ray not installed ({exc})"}
        return out
    _run_ray(files[:4], batch_size)  # warm-up: imports, Ray's first start
    out["ray"] = {"runs": [_run_ray(files, batch_size) for _ in range(repeats)]}
    for engine in (out["local"], out["ray"]):
        for key in ("steady_clips_per_s", "first_row_s", "seconds"):
            engine[key] = statistics.median(r[key] for r in engine["runs"])
    out["overhead_steady_pct"] = 100 * (1 - out["ray"]["steady_clips_per_s"] / out["local"]["steady_clips_per_s"])
    out["overhead_end_to_end_pct"] = 100 * (out["ray"]["seconds"] / out["local"]["seconds"] - 1)
    cascade = Cascade.load()
    paths = [f.path for f in files[:40]]
    bench_stages(cascade, paths[:8])  # warm-up: first calls of each library
    out["stages"] = bench_stages(cascade, paths)
    out["scaling"] = scaling_on_paper(out["stages"], batch_size=batch_size)
    return out


def scaling_on_paper(stages: dict, *, batch_size: int, cores: tuple[int, ...] = (2, 16),
                     machines: tuple[int, ...] = (1, 2, 4, 8, 16, 32)) -> dict:
    """Clips/s on N machines of C cores from the per-clip CPU costs (all CPU-bound, no I/O limit).

    Stage 1 (decode+features) and stage 2 (gender + one emotion model, hard routing) each
    cost CPU-seconds per clip; a cluster of N*C cores delivers N*C / (stage1 + stage2) clips/s
    when it has enough actors (stage-2 share of the cores), until the driver's CSV writing
    caps it (measured by :func:`bench_driver_rows`).
    """
    stage1 = (stages["decode_prepare_ms"] + stages["features_ms"]) / 1000
    stage2 = (stages["gender_ms"] + stages["emotion_ms_both_models"] / 2) / 1000
    per_clip = stage1 + stage2
    table = {}
    for c in cores:
        for n in machines:
            cpus = n * c
            actors = max(1, round(cpus * stage2 / per_clip))
            table[f"{n}x{c}"] = {"cpus": cpus, "actors": actors, "clips_per_s": cpus / per_clip}
    return {"stage1_cpu_s_per_clip": stage1, "stage2_cpu_s_per_clip": stage2,
            "actor_share_of_cpus": stage2 / per_clip, "driver_rows_per_s": bench_driver_rows(), "table": table}


def bench_driver_rows(n: int = 2000) -> float:
    """Rows per second the driver appends to the CSV (one fsync per row, as script.py does)."""
    from pipeline import batch
    from pipeline.cascade import Prediction

    row = batch.prediction_row(Prediction(status="ok", file="x.wav"), name="some/folder/clip_000000.wav")
    with tempfile.TemporaryDirectory() as tmp, batch.CsvSink(Path(tmp) / "rows.csv") as sink:
        start = time.perf_counter()
        for _ in range(n):
            sink.write(row)
        return n / (time.perf_counter() - start)


def engines_table(r: dict) -> str:
    loc, ray = r["local"], r["ray"]
    lines = [f"{r['clips']} clips, batch {r['batch_size']}, {r['cpus']} CPUs"]

    def runs(e: dict) -> str:
        return (f"median of {len(e['runs'])} runs: {e['seconds']:.1f} s end to end, first row after "
                f"{e['first_row_s']:.1f} s, then {e['steady_clips_per_s']:.1f} clips/s")

    lines.append(f"local (--jobs {loc['jobs']}): {runs(loc)}")
    if "skipped" in ray:
        return "\n".join(lines + [f"ray: {ray['skipped']}"])
    a = ray["runs"][0]
    lines.append(f"ray {a['version']} ({a['actors']} actor x {a['cpus_per_actor']:g} CPU, Ray start {a['ray_start_s']:.1f} s): "
                 f"{runs(ray)}")
    lines.append(f"engine overhead: {r['overhead_steady_pct']:.1f} % per clip (steady rate, second half of the rows), "
                 f"{r['overhead_end_to_end_pct']:.1f} % end to end on {r['clips']} clips (start-up included)")
    sc = r["scaling"]
    lines.append(f"per clip (warm, one process): stage 1 {sc['stage1_cpu_s_per_clip'] * 1000:.0f} ms CPU, stage 2 "
                 f"{sc['stage2_cpu_s_per_clip'] * 1000:.0f} ms CPU; actors take {100 * sc['actor_share_of_cpus']:.0f} % "
                 f"of the CPUs; driver writes {sc['driver_rows_per_s']:.0f} rows/s")
    for key, row in sc["table"].items():
        lines.append(f"  {key:>6} (machines x cores): {row['cpus']:4d} CPUs, {row['actors']:3d} actors, "
                     f"{row['clips_per_s']:7.1f} clips/s")
    return "\n".join(lines)


def engine_compare(args: argparse.Namespace, argv: list[str] | None) -> int:
    from pipeline.batch import InputFile

    rows = [u for u in read_manifest() if u.split == "test" and u.corpus == "ravdess"][: args.limit or None]
    inputs = [InputFile(u.path, f"{k // len(rows)}/{u.relpath}")
              for k, u in zip(range(args.engine_clips), itertools.cycle(rows))]
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version()},
               "set": f"RAVDESS test actors, {len(rows)} clips cycled to {len(inputs)} inputs",
               "engines": bench_engines(inputs, batch_size=args.batch_size)}
    out = args.out if "--out" in (argv or sys.argv) else PROJECT_ROOT / "reports" / "bench_engines.json"
    command = command_line("pipeline.bench", argv)
    table = engines_table(results["engines"])
    write_report(out.with_suffix(""), results,
                 f"# Engines: local against Ray\n\nGenerated by `{command}` (shipped models, this machine).\n\n```\n"
                 + table + "\n```\n", command=command, config=args)
    print(table)
    return 0

