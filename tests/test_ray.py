"""script.py --engine ray: the same CSV as --engine local, on a real two-node Ray cluster.

The cluster (fixture ``ray_cluster``) is started by the tests on 127.0.0.1 with ``ray start``:
a head and a second node, one CPU each, in a private temporary folder, and stopped at the end
by killing exactly the processes it started. Ray tests skip when Ray is not installed
(``make setup-ray``). The driver runs as a subprocess, as a user runs it.
"""
from __future__ import annotations

import csv
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import script
from pipeline.batch import discover, read_list, rewrite
from pipeline.paths import PROJECT_ROOT
from pipeline.testing import SR, speech_like

# ----------------------------------------------------------------------------- helpers


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_same_rows(local: Path, ray: Path) -> None:
    """Same files in the same order, same statuses and labels, numbers within 1e-5."""
    a, b = read_rows(local), read_rows(ray)
    assert [r["file"] for r in a] == [r["file"] for r in b]
    for x, y in zip(a, b):
        for column, value in x.items():
            try:
                assert float(value) == pytest.approx(float(y[column]), abs=1e-5), (x["file"], column)
            except ValueError:  # text columns: status, error, labels
                assert value == y[column], (x["file"], column)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def cluster_pids(temp_dir: str) -> list[int]:
    """Processes of the cluster living in ``temp_dir``: its daemons and everything they started."""
    roots = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and temp_dir in _cmdline(int(e.name))]
    tree, found, stack = _children(), set(), list(roots)
    while stack:
        pid = stack.pop()
        if pid not in found and pid != os.getpid():
            found.add(pid)
            stack.extend(tree.get(pid, []))
    return sorted(found)


def worker_pids(temp_dir: str, title: str) -> list[int]:
    """Ray worker processes of this cluster whose title (``ray::...``) contains ``title``."""
    return [pid for pid in cluster_pids(temp_dir) if _cmdline(pid).startswith("ray::") and title in _cmdline(pid)]


def ray_env(token: str) -> dict[str, str]:
    """The environment of the cluster's nodes and drivers: its own auth token, no usage stats."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
               TF_CPP_MIN_LOG_LEVEL="2", HF_HUB_OFFLINE="1")
    return env


class Cluster:
    def __init__(self, address: str, temp_dir: str, env: dict[str, str]) -> None:
        self.address, self.temp_dir, self.env = address, temp_dir, env

    def run_script(self, args: list[str], *, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "script.py", *args], cwd=PROJECT_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def start_script(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "script.py", *args], cwd=PROJECT_ROOT, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_rows(out: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> int:
    """Wait until ``out`` holds at least ``n`` rows (or the run ends); the row count."""
    deadline = time.monotonic() + timeout
    rows = 0
    while time.monotonic() < deadline and proc.poll() is None:
        rows = max(0, len(out.read_text(encoding="utf-8").splitlines()) - 1) if out.exists() else 0
        if rows >= n:
            return rows
        time.sleep(0.05)
    return rows


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and a second node on 127.0.0.1, one CPU each (the machine's cores), stopped at the end."""
    pytest.importorskip("ray", reason="Ray is not installed (make setup-ray)")
    ray_bin = Path(sys.executable).with_name("ray")
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    port = _free_port()
    env = ray_env(secrets.token_hex(16))
    common = ["--num-cpus", "1", "--disable-usage-stats", "--object-store-memory", str(200 * 2**20)]
    try:
        subprocess.run([str(ray_bin), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                        "--include-dashboard=false", "--temp-dir", temp_dir, *common],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([str(ray_bin), "start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1",
                        *common], env=env, check=True, capture_output=True, timeout=120)
        yield Cluster(f"127.0.0.1:{port}", temp_dir, env)
    finally:
        pids = cluster_pids(temp_dir)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(1.0)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def models_args(tiny_models) -> list[str]:
    return ["--gender-model", str(tiny_models["female_gender"]), "--male-model", str(tiny_models["male"]),
            "--female-model", str(tiny_models["female"]), "-q"]


@pytest.fixture
def zoo(tmp_path) -> tuple[Path, Path]:
    """Good clips and every kind of bad input, as a folder and a list file (with a missing path)."""
    import soundfile as sf

    root = tmp_path / "zoo"
    root.mkdir()
    for i in range(5):
        sf.write(root / f"clip{i}.wav", speech_like(1.5 + 0.25 * i, sr=SR, seed=i), SR)
    sf.write(root / "stereo.flac", np.stack([speech_like(2.0, sr=SR)] * 2, axis=1), SR, format="FLAC")
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("a text file named .wav")
    sf.write(root / "silence.wav", np.zeros(2 * SR, dtype=np.float32), SR)
    sf.write(root / "short.wav", speech_like(0.05, sr=SR), SR)
    listing = tmp_path / "paths.txt"
    listing.write_text("# extra inputs\nzoo/clip0.wav\nzoo/missing.wav\n\nzoo/clip1.wav\n", encoding="utf-8")
    return root, listing


# ----------------------------------------------------------------------------- without a cluster


def test_list_files_and_file_uris(zoo):
    root, listing = zoo
    assert [f.name for f in read_list(listing)] == ["zoo/clip0.wav", "zoo/missing.wav", "zoo/clip1.wav"]
    files = discover([root], lists=[listing])
    names = [f.name for f in files]
    assert names[-1] == "zoo/missing.wav" and "zoo/clip0.wav" not in names  # clip0 came already, from the folder
    uri_files = discover([root.as_uri()])
    assert [f.name for f in uri_files] == [f.name for f in files[:-1]]
    assert all(f.uri and f.uri.startswith("file://") for f in uri_files)
    with pytest.raises(FileNotFoundError):
        discover([(root / "nope").as_uri()])


def test_uris_score_like_paths(zoo, tmp_path, models_args):
    root, _ = zoo
    by_path, by_uri = tmp_path / "paths.csv", tmp_path / "uris.csv"
    assert script.main([str(root), "-o", str(by_path), "--jobs", "1", *models_args]) == 1
    assert script.main([root.as_uri(), "-o", str(by_uri), "--jobs", "1", *models_args]) == 1
    assert_same_rows(by_path, by_uri)


def test_ray_engine_without_ray_is_a_set_up_error(zoo, tmp_path, models_args, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "pipeline.ray_engine", raising=False)
    out = tmp_path / "out.csv"
    assert script.main([str(zoo[0]), "-o", str(out), "--engine", "ray", *models_args]) == 2
    assert "requirements-ray.txt" in capsys.readouterr().err
    assert script.main([str(zoo[0]), "-o", str(out), "--ray-address", "auto", *models_args]) == 2


# ----------------------------------------------------------------------------- on the cluster


def test_ray_equals_local_on_the_bad_input_zoo(ray_cluster, zoo, tmp_path, models_args):
    root, listing = zoo
    local, ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    inputs = [str(root), "--list", str(listing)]
    assert script.main([*inputs, "-o", str(local), *models_args]) == 1
    done = ray_cluster.run_script([*inputs, "-o", str(ray), "--engine", "ray", "--ray-address", ray_cluster.address,
                       "--batch-size", "3", *models_args])
    assert done.returncode == 1, done.stderr
    assert_same_rows(local, ray)
    status = {r["file"]: r["status"] for r in read_rows(ray)}
    assert status == {**{f"clip{i}.wav": "ok" for i in range(5)}, "stereo.flac": "ok", "empty.wav": "empty",
                      "text.wav": "unreadable", "silence.wav": "silent", "short.wav": "too_short",
                      "zoo/missing.wav": "not_found"}
    # An existing output is never replaced without --overwrite.
    again = ray_cluster.run_script([*inputs, "-o", str(ray), "--engine", "ray", "--ray-address", ray_cluster.address,
                        *models_args])
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert_same_rows(local, ray)


def test_ray_equals_local_on_real_clips(ray_cluster, shared_data, tmp_path):
    from training.corpus import read_manifest

    clips = [u for u in read_manifest() if u.split == "test" and u.corpus == "ravdess"][:6]
    listing = tmp_path / "clips.txt"
    listing.write_text("".join(f"{u.path}\n" for u in clips), encoding="utf-8")
    local, ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert script.main(["--list", str(listing), "-o", str(local), "-q"]) == 0
    done = ray_cluster.run_script(["--list", str(listing), "-o", str(ray), "--engine", "ray", "--ray-address",
                       ray_cluster.address, "--batch-size", "4", "-q"])
    assert done.returncode == 0, done.stderr
    assert_same_rows(local, ray)
    assert all(r["status"] == "ok" for r in read_rows(ray)) and len(read_rows(ray)) == 6


@pytest.fixture
def many_clips_zoo(zoo) -> Path:
    """The zoo and 40 more clips: a run long enough to kill something in the middle of it."""
    import soundfile as sf

    root, _ = zoo
    for i in range(40):
        sf.write(root / f"more{i:02d}.wav", speech_like(2.0, sr=SR, seed=100 + i), SR)
    return root


def test_killed_workers_lose_and_duplicate_no_row(ray_cluster, many_clips_zoo, tmp_path, models_args):
    local, ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert script.main([str(many_clips_zoo), "-o", str(local), *models_args]) == 1
    proc = ray_cluster.start_script([str(many_clips_zoo), "-o", str(ray), "--engine", "ray", "--ray-address",
                         ray_cluster.address, "--batch-size", "2", *models_args])
    killed = []
    try:
        assert wait_for_rows(ray, 4, proc) >= 4, "the run ended before anything could be killed"
        for title in ("ModelActor", "featurise_batch"):  # a model actor, then a stage-1 task's worker
            pids = worker_pids(ray_cluster.temp_dir, title)
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(title)
            time.sleep(0.5)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "ModelActor" in killed, "no model actor was found to kill"
    assert proc.returncode == 1, stderr
    names = [r["file"] for r in read_rows(ray)]
    assert len(names) == len(set(names)) == len(read_rows(local))
    assert_same_rows(local, ray)


def test_resume_after_the_driver_is_killed(ray_cluster, many_clips_zoo, tmp_path, models_args):
    local, ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert script.main([str(many_clips_zoo), "-o", str(local), *models_args]) == 1
    args = [str(many_clips_zoo), "-o", str(ray), "--engine", "ray", "--ray-address", ray_cluster.address,
            "--batch-size", "2", *models_args]
    proc = ray_cluster.start_script(args)
    try:
        assert wait_for_rows(ray, 6, proc) >= 6
    finally:
        proc.kill()  # SIGKILL: no clean-up, the last line may be cut
        proc.communicate()
    partial = read_rows(ray)
    assert 0 < len(partial) < len(read_rows(local))
    # Mark a finished row: a resumed run that redid it would lose the mark.
    complete = [r for r in partial if None not in r.values()]
    kept = next(r for r in complete if r["status"] == "ok")
    kept["error"] = "kept by resume"
    rewrite(ray, complete)
    resumed = ray_cluster.run_script([*args, "--resume"])
    assert resumed.returncode == 1, resumed.stderr
    rows = read_rows(ray)
    assert [r["file"] for r in rows] == [r["file"] for r in read_rows(local)]
    assert next(r for r in rows if r["file"] == kept["file"])["error"] == "kept by resume"
    kept["error"] = ""
    rewrite(tmp_path / "cleaned.csv", [kept if r["file"] == kept["file"] else r for r in rows])
    assert_same_rows(local, tmp_path / "cleaned.csv")


@pytest.mark.parametrize("voices", ["auto", "room"])
def test_ray_segments_equal_local(ray_cluster, zoo, tmp_path, models_args, voices):
    """``--segments --engine ray``: the same segment rows as the local engine, every bad input with its row,
    with either way of finding voices."""
    root, listing = zoo
    local, ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    inputs = [str(root), "--list", str(listing), "--segments", "--voices", voices]
    assert script.main([*inputs, "-o", str(local), *models_args]) == 1
    done = ray_cluster.run_script([*inputs, "-o", str(ray), "--engine", "ray", "--ray-address", ray_cluster.address,
                                   *models_args])
    assert done.returncode == 1, done.stderr
    assert_same_rows(local, ray)
    rows = read_rows(ray)
    status = {r["file"]: r["status"] for r in rows}
    assert status["empty.wav"] == "empty" and status["text.wav"] == "unreadable"
    assert status["zoo/missing.wav"] == "not_found" and status["silence.wav"] == "silent"
    assert {r["file"] for r in rows} >= {f"clip{i}.wav" for i in range(5)}
