"""Speed and memory benchmark on real clips: ``python -m pipeline.bench``.

Reports, on this machine, with the shipped models:

* batch throughput (clips/s) and real-time factor (processing seconds per second of
  audio) through ``script.py``'s code path: discover files, decode, score, write the CSV;
* time per stage per clip: decode + prepare, features, gender model, emotion model;
* warm single-clip latency for a 4-second clip (median of repeats);
* the web app's analysis path: a 4-second clip and a 3-minute two-voice recording (warm);
* cold start: fresh processes from start to their first result (Python API, ``script.py``, the
  app's analysis path);
* peak resident memory, and resident memory sampled while scoring ``--soak`` clips
  (repeats of the set) to show it stays flat;
* a 10-minute recording through the long-audio timeline (when ``pipeline.timeline`` exists).

Prints a table and writes JSON (``reports/bench.json`` by default) so runs can be compared.
"""
from __future__ import annotations

import argparse
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
from training.bench_stages import bench_stages, clip_duration
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

    audio_s = sum(clip_duration(f.path) for f in files)
    start = time.perf_counter()
    with batch.CsvSink(out_csv) as sink:
        for item, prediction in batch.score(cascade, files, batch_size=batch_size, jobs=jobs):
            sink.write(batch.prediction_row(prediction, name=item.name))
    elapsed = time.perf_counter() - start
    return {"jobs": jobs, "clips": len(files), "audio_s": audio_s, "seconds": elapsed,
            "clips_per_s": len(files) / elapsed,
            "real_time_factor": elapsed / audio_s}


def bench_latency(cascade, path: Path, repeats: int = 20) -> dict:
    cascade.predict_file(path)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        cascade.predict_file(path)
        times.append(time.perf_counter() - start)
    return {"clip": str(path), "clip_s": clip_duration(path), "median_ms": 1000 * statistics.median(times),
            "p90_ms": 1000 * float(np.percentile(times, 90))}


def bench_app(cascade, path: Path, repeats: int = 10) -> dict:
    """Warm upload-to-result time of the web app's analysis path (:func:`pipeline.app_views.analyse_clips`:
    prediction, confidence, waveform, spectrogram; voices and segments for 30 s and more)."""
    from pipeline.app_views import analyse_clips

    data = Path(path).read_bytes()
    analyse_clips(cascade, [(Path(path).name, data)])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        analyse_clips(cascade, [(Path(path).name, data)])
        times.append(time.perf_counter() - start)
    return {"median_ms": 1000 * statistics.median(times), "p90_ms": 1000 * float(np.percentile(times, 90))}


def conversation_wav(rows, seconds: float = 180.0, *, pause_s: float = 0.5) -> bytes:
    """A WAV (16 kHz mono, 16-bit) of about ``seconds``: clips of a male and a female speaker of
    ``rows`` in turns, ``pause_s`` of silence between turns."""
    import io

    import soundfile as sf

    from pipeline.audio import load_audio

    men = [u for u in rows if u.gender == "male"]
    women = [u for u in rows if u.gender == "female"]
    sr, parts, total = 16000, [], 0.0
    for k in range(10_000):
        u = (men if k % 2 == 0 else women)[(k // 2) % min(len(men), len(women))]
        y = load_audio(u.path).samples
        parts += [y, np.zeros(int(pause_s * sr), dtype=np.float32)]
        total += y.size / sr + pause_s
        if total >= seconds:
            break
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.concatenate(parts), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def bench_app_recording(cascade, rows, seconds: float = 180.0) -> dict:
    """Warm upload-to-result time of the web app for a ``seconds``-long two-voice recording."""
    from pipeline.app_views import analyse_clips

    data = conversation_wav(rows, seconds)
    start = time.perf_counter()
    result = analyse_clips(cascade, [("conversation.wav", data)])[0]
    elapsed = time.perf_counter() - start
    rec = getattr(result, "recording", None)
    return {"recording_s": seconds, "seconds": elapsed, "segments": 0 if rec is None else len(rec.segments)}


def _cold(command: list[str]) -> dict:
    """Run ``command`` in a fresh process: wall seconds to its exit, and to its first result when it
    prints ``first_result_s`` (seconds since the parent started it, read from ``BENCH_T0``)."""
    start = time.time()
    proc = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "BENCH_T0": repr(start)})
    wall = time.time() - start
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    out = {"process_wall_s": wall}
    lines = proc.stdout.strip().splitlines()
    if lines and lines[-1].startswith("first_result_s="):
        out["first_result_s"] = float(lines[-1].split("=", 1)[1])
    return out


_SINCE_START = "import os, time; print(f'first_result_s={time.time() - float(os.environ[\"BENCH_T0\"])}')"


def bench_cold_start(path: Path) -> dict:
    """Fresh processes from start to their first result: the Python API, the web app's analysis
    path (imports, models, one clip; the Streamlit server's own start-up comes on top), and
    ``script.py`` on one file (to its exit: the CSV is written then)."""
    api = (f"from pipeline import Cascade; r=Cascade.load().predict_file({str(path)!r}); assert r.ok, r.error; "
           + _SINCE_START)
    app = ("from pathlib import Path; from pipeline.app_views import analyse_clips; "
           "from pipeline.cascade import Cascade; "
           f"p=Path({str(path)!r}); r=analyse_clips(Cascade.load(), [(p.name, p.read_bytes())])[0]; "
           "assert r.prediction.ok; " + _SINCE_START)
    with tempfile.TemporaryDirectory() as tmp:
        script = _cold([sys.executable, "script.py", str(path), "-o", str(Path(tmp) / "one.csv")])
    return {**_cold([sys.executable, "-c", api]), "script_py": script, "app": _cold([sys.executable, "-c", app])}


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
    if limit:  # men and women in turn, so that a small set still makes the two-voice recording
        men, women = [u for u in rows if u.gender == "male"], [u for u in rows if u.gender == "female"]
        rows = [u for pair in zip(men, women) for u in pair][:limit]
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
    results["app_3min"] = bench_app_recording(cascade, rows)
    results["cold_start"] = bench_cold_start(four_s.path)
    results["timeline_10min"] = bench_timeline(cascade, four_s.path)
    if soak:
        results["soak"] = bench_soak(cascade, files, soak, batch_size=batch_size)
    results["peak_rss_mb"] = _peak_mb()
    return results


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
        f"app 3 min two-voice recording: {r['app_3min']['seconds']:.1f} s upload to result "
        f"({r['app_3min'].get('segments', r['app_3min'].get('windows'))} speech segments, warm)",
        f"cold start:     process start to first result: Python API {cold.get('first_result_s', float('nan')):.1f} s, "
        f"app analysis path {cold['app'].get('first_result_s', float('nan')):.1f} s, "
        f"script.py one file {cold['script_py'].get('process_wall_s', float('nan')):.1f} s (to its exit, CSV written)",
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
        from training.bench_engines import engine_compare

        return engine_compare(args, argv)
    results = run(soak=args.soak, batch_size=args.batch_size, limit=args.limit)
    command = command_line("pipeline.bench", argv)
    write_report(args.out.with_suffix(""), results,
                 f"# Benchmark\n\nGenerated by `{command}` (shipped models, this machine).\n\n```\n"
                 + to_table(results) + "\n```\n", command=command, config=args)
    print(to_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
