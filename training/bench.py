"""Speed and memory benchmark on real clips: ``python -m pipeline.bench``.

Reports, on this machine, with the shipped models:

* batch throughput (clips/s) and real-time factor (processing seconds per second of
  audio) through ``script.py``'s code path: discover files, decode, score, write the CSV;
* time per stage per clip: decode + prepare, features, gender model, emotion model;
* warm single-clip latency for a 4-second clip (median of repeats);
* cold start: a fresh process from start to its first result;
* peak resident memory, and resident memory sampled while scoring ``--soak`` clips
  (repeats of the set) to show it stays flat;
* a 10-minute recording through the long-audio timeline (when ``pipeline.timeline`` exists).

Prints a table and writes JSON (``reports/bench.json`` by default) so runs can be compared.
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.paths import PROJECT_ROOT
from training.corpus import read_manifest
from training.reporting import command_line, write_report


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_batch(cascade, files, out_csv: Path, *, batch_size: int, jobs: int = 1) -> dict:
    from pipeline import batch

    audio_s = sum(_duration(f.path) for f in files)
    start = time.perf_counter()
    with batch.CsvSink(out_csv) as sink:
        for item, prediction in batch.score(cascade, files, batch_size=batch_size, jobs=jobs):
            sink.write(batch.prediction_row(prediction, name=item.name))
    elapsed = time.perf_counter() - start
    return {"jobs": jobs, "clips": len(files), "audio_s": audio_s, "seconds": elapsed,
            "clips_per_s": len(files) / elapsed,
            "real_time_factor": elapsed / audio_s}


def _duration(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration


def bench_stages(cascade, paths) -> dict:
    """Mean milliseconds per clip of each stage, run stage by stage over ``paths``."""
    from pipeline.audio import load_audio
    from pipeline.features import extract_features

    t0 = time.perf_counter()
    prepared = [load_audio(p, config=cascade.audio_config) for p in paths]
    t1 = time.perf_counter()
    feats = np.stack([extract_features(a.samples, config=cascade.feature_config) for a in prepared])
    t2 = time.perf_counter()
    cascade.gender.predict_proba_batch([a.samples for a in prepared])
    t3 = time.perf_counter()
    for model in cascade.emotion_models.values():
        model.predict_proba(feats)
    t4 = time.perf_counter()
    n = len(paths)
    return {
        "decode_prepare_ms": 1000 * (t1 - t0) / n,
        "features_ms": 1000 * (t2 - t1) / n,
        "gender_ms": 1000 * (t3 - t2) / n,
        "emotion_ms_both_models": 1000 * (t4 - t3) / n,
    }


def bench_latency(cascade, path: Path, repeats: int = 20) -> dict:
    cascade.predict_file(path)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        cascade.predict_file(path)
        times.append(time.perf_counter() - start)
    return {"clip": str(path), "clip_s": _duration(path), "median_ms": 1000 * statistics.median(times),
            "p90_ms": 1000 * float(np.percentile(times, 90))}


def bench_app(cascade, path: Path, repeats: int = 10) -> dict:
    """Warm upload-to-result time of the web app's analysis path (prediction, waveform, spectrogram)."""
    sys.path.insert(0, str(PROJECT_ROOT))
    try:
        import app  # noqa: F401  (importing defines the helpers; it does not start Streamlit)
    except Exception as exc:  # streamlit missing or app absent
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    data = Path(path).read_bytes()
    app.analyse_clips(cascade, [(Path(path).name, data)])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        app.analyse_clips(cascade, [(Path(path).name, data)])
        times.append(time.perf_counter() - start)
    return {"median_ms": 1000 * statistics.median(times), "p90_ms": 1000 * float(np.percentile(times, 90))}


def bench_cold_start(path: Path) -> dict:
    code = ("import time; t=time.perf_counter(); from pipeline import Cascade; "
            f"r=Cascade.load().predict_file({str(path)!r}); assert r.ok, r.error; "
            "print(time.perf_counter()-t)")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return {"process_wall_s": wall, "import_load_predict_s": float(proc.stdout.strip().splitlines()[-1])}


def bench_soak(cascade, files, n_clips: int, *, batch_size: int) -> dict:
    from pipeline import batch

    samples, done = [], 0
    with tempfile.TemporaryDirectory() as tmp, batch.CsvSink(Path(tmp) / "soak.csv") as sink:
        while done < n_clips:
            chunk = [files[(done + i) % len(files)] for i in range(min(batch_size, n_clips - done))]
            for item, prediction in batch.score(cascade, chunk, batch_size=batch_size):
                sink.write(batch.prediction_row(prediction, name=item.name))
            done += len(chunk)
            if done % max(batch_size, n_clips // 20 // batch_size * batch_size) < batch_size:
                samples.append((done, _rss_mb()))
        rows = sum(1 for _ in open(Path(tmp) / "soak.csv")) - 1
    first_half = [m for n, m in samples if n <= n_clips / 2]
    second_half = [m for n, m in samples if n > n_clips / 2]
    return {"clips": n_clips, "rows_written": rows, "rss_mb_samples": samples,
            "rss_growth_mb_second_half": (max(second_half) - max(first_half)) if first_half and second_half else None}


def bench_timeline(cascade, path: Path, minutes: float = 10.0) -> dict:
    try:
        from pipeline.timeline import predict_timeline
    except ImportError:
        return {"skipped": "pipeline.timeline not available"}
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32")
    reps = int(np.ceil(minutes * 60 * sr / y.size))
    long = np.tile(y, reps)[: int(minutes * 60 * sr)]
    start = time.perf_counter()
    timeline = predict_timeline(cascade, long, sr)
    elapsed = time.perf_counter() - start
    return {"audio_s": long.size / sr, "seconds": elapsed, "segments": len(timeline.segments)}


def run(*, soak: int, batch_size: int, limit: int | None) -> dict:
    from pipeline.batch import InputFile
    from pipeline.cascade import Cascade

    rows = [u for u in read_manifest() if u.split == "test" and u.corpus == "ravdess"]
    if limit:
        rows = rows[:limit]
    files = [InputFile(u.path, u.relpath) for u in rows]
    four_s = min(rows, key=lambda u: abs(u.duration_s - 4.0))
    t = time.perf_counter()
    cascade = Cascade.load()
    load_s = time.perf_counter() - t
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "set": f"RAVDESS test actors, {len(files)} clips",
        "model_load_s": load_s,
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["batch"] = bench_batch(cascade, files, Path(tmp) / "out.csv", batch_size=batch_size, jobs=1)
        results["batch_jobs"] = bench_batch(cascade, files, Path(tmp) / "out2.csv", batch_size=batch_size,
                                            jobs=os.cpu_count() or 1)
    results["stages"] = bench_stages(cascade, [f.path for f in files[:60]])
    results["latency_4s"] = bench_latency(cascade, four_s.path)
    results["app_4s"] = bench_app(cascade, four_s.path)
    results["cold_start"] = bench_cold_start(four_s.path)
    results["timeline_10min"] = bench_timeline(cascade, four_s.path)
    if soak:
        results["soak"] = bench_soak(cascade, files, soak, batch_size=batch_size)
    results["peak_rss_mb"] = _peak_mb()
    return results


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


def to_table(r: dict) -> str:
    b, s, lat, cold = r["batch"], r["stages"], r["latency_4s"], r["cold_start"]
    lines = [
        f"set: {r['set']}  (cpus: {r['machine']['cpus']})",
        f"batch:          {b['clips_per_s']:.1f} clips/s, real-time factor {b['real_time_factor']:.4f} "
        f"({b['clips']} clips, {b['audio_s']:.0f} s of audio in {b['seconds']:.1f} s; --jobs 1)",
        f"batch --jobs {r['batch_jobs']['jobs']}: {r['batch_jobs']['clips_per_s']:.1f} clips/s, real-time factor "
        f"{r['batch_jobs']['real_time_factor']:.4f}",
        "stages (ms/clip): " + ", ".join(f"{k.replace('_ms', '')} {v:.1f}" for k, v in s.items()),
        f"latency 4 s clip: median {lat['median_ms']:.0f} ms, p90 {lat['p90_ms']:.0f} ms (warm)",
        f"app 4 s clip:   median {r['app_4s'].get('median_ms', float('nan')):.0f} ms upload to result (warm)",
        f"cold start:     {cold.get('process_wall_s', float('nan')):.1f} s process start to first result",
    ]
    t = r.get("timeline_10min", {})
    if "seconds" in t:
        lines.append(f"timeline 10 min: {t['seconds']:.1f} s ({t['segments']} windows)")
    if "soak" in r:
        lines.append(f"soak:           {r['soak']['clips']} clips, {r['soak']['rows_written']} rows, RSS growth over "
                     f"second half {r['soak']['rss_growth_mb_second_half']:.1f} MB")
    lines.append(f"peak RSS:       {r['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "bench.json")
    parser.add_argument("--soak", type=int, default=2000, help="clips to score for the memory soak (0: skip)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N clips (quick check)")
    parser.add_argument("--engine-clips", type=int, default=1200,
                        help="inputs for --engine-compare: the clips cycled to this many, so that start-up "
                             "costs are small against the run (default 1200)")
    parser.add_argument("--engine-compare", action="store_true",
                        help="only compare script.py's engines, local and ray, on the clips (--limit) and work out "
                             "the scaling to N machines; writes reports/bench_engines.* unless --out is given")
    args = parser.parse_args(argv)
    if args.engine_compare:
        return _engine_compare(args, argv)
    results = run(soak=args.soak, batch_size=args.batch_size, limit=args.limit)
    command = command_line("pipeline.bench", argv)
    write_report(args.out.with_suffix(""), results,
                 f"# Benchmark\n\nGenerated by `{command}` (shipped models, this machine).\n\n```\n"
                 + to_table(results) + "\n```\n", command=command, config=args)
    print(to_table(results))
    return 0


def _engine_compare(args: argparse.Namespace, argv: list[str] | None) -> int:
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


if __name__ == "__main__":
    raise SystemExit(main())
