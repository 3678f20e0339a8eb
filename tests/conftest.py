"""Shared fixtures (tiny models with known answers, synthetic audio, the shipped cascade, the
Streamlit servers and headless Chromium of the browser tests) and markers.

The fakes themselves live in :mod:`pipeline.testing` and :mod:`training.testing`; test
modules import them from there. Markers (declared in ``pyproject.toml``) are assigned
here, in :func:`pytest_collection_modifyitems`, from the fixtures a test uses, its file,
or the tables below; ``pytest -m "not slow"`` is the fast loop.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest

from pipeline.testing import SR, make_emotion_model, make_gender_model, speech_like
from training.corpus import data_dir

# ----------------------------------------------------------------------------- markers

DATA_FIXTURES = {"shared_data"}
"""Fixtures that need the shared corpus: their tests get ``data``."""

SLOW_FIXTURES = {
    "shipped_cascade",  # the shipped models end to end
    "many_clips",       # test_reliability: script.py in subprocesses, killed and resumed (20-30 s each)
    "tiny_app",         # test_app: the Streamlit page run headless by AppTest (3-9 s each)
    "ray_cluster",      # test_ray: a two-node Ray cluster on 127.0.0.1, script.py --engine ray (15-60 s each)
}
"""Fixtures whose tests take more than a few seconds: their tests get ``slow``."""

BROWSER_FILES = {"test_browser.py"}
"""Files whose tests drive a real Chromium: ``browser`` and ``slow``."""

SLOW_TESTS = {
    # "file::function": why (seconds measured on the 2-core machine)
    "test_reliability.py::test_soak_two_thousand_clips_memory_flat": "2,000 clips scored (40 s)",
    "test_reliability.py::test_long_recording_is_scored": "a 5-minute recording (3 s)",
    "test_recipe_cv.py::test_run_folds_end_to_end_on_learnable_synthetic_features": "trains CNNs per fold (13 s)",
    "test_train_emotion.py::test_train_family_fits_the_configured_splits": "trains emotion CNNs (4-11 s)",
    "test_emotion_encoder_input.py::test_train_family_with_an_encoder_input": "trains two-branch emotion CNNs (15-40 s)",
    "test_app.py::test_page_without_input": "the Streamlit page through AppTest (3-6 s)",
    "test_app.py::test_shipped_models_on_a_real_clip": "the shipped models end to end",
    "test_app_views.py::test_long_recording_progress_moves_through_the_steps": "VAD + GE2E, a slowed model (5-10 s)",
    "test_app_views.py::test_clicking_a_segment_plays_from_its_start": "VAD + GE2E + tiny cascade (3-5 s)",
    "test_gender.py::test_shipped_model_on_real_test_clips": "the shipped gender model on real clips",
    "test_voices.py::test_analyse_recording_returns_time_ordered_segments_with_voices": "VAD + GE2E + tiny cascade (3 s)",
    "test_grouping.py::test_worker_processes_give_the_same_rows": "spawns two GE2E worker processes (15-25 s)",
    "test_grouping.py::test_real_actors_are_two_voices_with_their_genders": "the shipped models on real clips, twice",
    "test_notebooks.py::test_evaluation_notebook_on_a_subset": "executes a notebook",
    "test_notebooks.py::test_data_and_training_notebooks": "executes two notebooks",
    "test_notebooks.py::test_noise_notebook_on_a_few_clips": "executes a notebook",
    "test_notebooks.py::test_new_corpora_notebook_reads_the_reports": "executes a notebook twice",
    "test_onnx_parity.py::test_runtime_answers_without_torch_or_tensorflow": "script.py and the app in a subprocess (20 s)",
    "test_onnx_parity.py::test_whole_cascade_agrees_on_test_clips": "30 test clips through both backends (1-2 min)",
}
"""Tests that take more than a few seconds without using a fixture of :data:`SLOW_FIXTURES`."""

DATA_TESTS = {
    "test_gender.py::test_shipped_model_on_real_test_clips",  # reads training.corpus.data_dir() itself
}
"""Tests that need the shared corpus without using a fixture of :data:`DATA_FIXTURES`."""


FULL_PROFILE_TESTS = {
    # "file::function": what it needs that the runtime profile (requirements-runtime.txt) does not install
    "test_app.py::test_uncertain_thresholds_and_quoted_figures_match_the_reports": "the gender recipe (PyYAML)",
    "test_cascade.py::test_emotion_folder_missing_file_names_it": "Keras model files",
    "test_cascade.py::test_truncated_keras_file_is_a_model_error": "Keras model files",
    "test_channel.py::test_select_rows_leaves_out_excluded_speakers": "the gender trainer (PyYAML, torch)",
    "test_channel.py::test_train_gender_with_channel_copies": "the gender trainer (PyYAML, torch)",
    "test_channel.py::test_version_probs": "the gender trainer (PyYAML, torch)",
    "test_corpus_pitch.py::test_pitch_balance_known_answer": "the gender trainer (PyYAML, torch)",
    "test_corpus_pitch.py::test_train_gender_with_pitch_balance": "the gender trainer (PyYAML, torch)",
    "test_emotion_encoder_input.py::test_train_family_with_an_encoder_input": "the emotion trainer (PyYAML, TensorFlow)",
    "test_emotion_holdout.py::test_run_holds_the_corpus_out_and_refuses_unknown_ones": "the emotion trainer (PyYAML)",
    "test_gender_card.py::*": "the gender recipe (PyYAML)",
    "test_gender_fusion.py::test_second_opinion_fits_on_clips_and_copies_and_writes_the_recipe_fusion":
        "the gender recipe (PyYAML)",
    "test_gender_holdout.py::test_train_gender_without_a_corpus": "the gender trainer (PyYAML, torch)",
    "test_room_conversations.py::*": "the room simulation and DER of the study (pyroomacoustics, pyannote.metrics)",
    "test_vad.py::test_loading_keeps_the_callers_thread_count": "torch (silero-vad's own loader)",
}
"""Tests of the training stack inside files that otherwise also run on the runtime profile (``make
test-runtime``): marked ``full_profile`` and skipped, with the reason, where that stack is not installed.
Files that import the stack at the top skip themselves with ``pytest.importorskip``."""

FULL_PROFILE_MODULES = ("torch", "tensorflow", "yaml", "pyroomacoustics", "pyannote.metrics")


def _full_profile_missing() -> list[str]:
    """The modules of :data:`FULL_PROFILE_MODULES` that cannot be imported here (none on the full profile)."""
    import importlib.util

    missing = []
    for name in FULL_PROFILE_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def marker_key(item: pytest.Item) -> str:
    """``"<file name>::<function name>"`` of a collected test, without parameters."""
    return f"{item.path.name}::{getattr(item, 'originalname', item.name)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _full_profile_missing()
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        key = marker_key(item)
        why = FULL_PROFILE_TESTS.get(key) or FULL_PROFILE_TESTS.get(f"{item.path.name}::*")
        if why:
            item.add_marker(pytest.mark.full_profile)
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"needs the full profile: {why} ({', '.join(missing)} not installed)"))
        if fixtures & DATA_FIXTURES or key in DATA_TESTS:
            item.add_marker(pytest.mark.data)
        if item.path.name in BROWSER_FILES:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)
        elif fixtures & SLOW_FIXTURES or key in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _backend_choice_restored():
    """Importing ``app.py`` in-process (AppTest) sets ``SER_BACKEND`` for the page; later tests keep their own."""
    before = os.environ.get("SER_BACKEND")
    yield
    if before is None:
        os.environ.pop("SER_BACKEND", None)
    else:
        os.environ["SER_BACKEND"] = before


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Folders of tiny models with known answers.

    ``female_gender``: always female (p=0.982); ``male_gender``: always male;
    ``even_gender``: 50/50. ``male``: emotion model that answers *sad*;
    ``female``: answers *angry*.
    """
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "female_gender": make_gender_model(root / "female_gender", female_logit=4.0),
        "male_gender": make_gender_model(root / "male_gender", female_logit=-4.0),
        "even_gender": make_gender_model(root / "even_gender", female_logit=0.0),
        "male": make_emotion_model(root / "male", name="male", favourite="sad"),
        "female": make_emotion_model(root / "female", name="female", favourite="angry"),
    }


@pytest.fixture(scope="session")
def tiny_cascade(tiny_models):
    from pipeline.cascade import Cascade

    return Cascade.load(tiny_models["female_gender"], male_dir=tiny_models["male"], female_dir=tiny_models["female"])


@pytest.fixture(scope="session")
def shipped_cascade():
    from pipeline.cascade import Cascade

    return Cascade.load()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_dir()
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"shared corpus not found at {root}")
    return root


@pytest.fixture
def wav_file(tmp_path):
    """Factory: write ``speech_like`` audio (or a given array) to a file and return its path."""
    import soundfile as sf

    def make(name: str = "speech.wav", *, duration_s: float = 2.0, sr: int = SR, y: np.ndarray | None = None,
             **write_kwargs) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = speech_like(duration_s, sr=sr) if y is None else y
        sf.write(path, data, sr, **write_kwargs)
        return path

    return make


@pytest.fixture
def two_corpora_env(tmp_path, monkeypatch) -> Path:
    """:func:`training.testing.write_two_corpora` in a fresh folder, set as the data dir."""
    from training.testing import write_two_corpora

    data = tmp_path / "data"
    data.mkdir()
    write_two_corpora(data)
    monkeypatch.setenv("SER_DATA_DIR", str(data))
    return data


# ----------------------------------------------------------------------------- browser (test_browser.py)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SERVER_START_S = 120
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _shipped_models_ready() -> bool:  # the trained emotion models are in the repository
    return all((ROOT / d / f).is_file() for d in ("male_models", "female_models")
               for f in ("model.keras", "scaler.joblib", "config.json"))


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit did not answer on {url} within {SERVER_START_S} s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser_tools():
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(binary):
            pytest.skip(f"{binary} not found: install Debian's chromium and chromium-driver "
                        "(apt-get install -y chromium chromium-driver) to run the browser test")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -r requirements.txt)")


@pytest.fixture(scope="module")
def servers(browser_tools, tiny_models, tmp_path_factory):
    """Factory: ``servers(name, **env)`` starts (once per name) ``streamlit run app.py``; returns its URL."""
    started: dict[str, tuple[str, subprocess.Popen]] = {}
    logs = tmp_path_factory.mktemp("streamlit_logs")

    def start(name: str, **extra: str) -> str:
        if name in started:
            return started[name][0]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", HF_HUB_OFFLINE="1")
        for key in ("SER_GENDER_MODEL", "SER_ALLOW_MODEL_CHOICE", "SER_MODEL_ALLOWLIST"):
            env.pop(key, None)
        if not _shipped_models_ready():  # still being trained: exercise the app with the tiny models
            env["SER_MALE_MODEL_DIR"] = str(tiny_models["male"])
            env["SER_FEMALE_MODEL_DIR"] = str(tiny_models["female"])
        env.update(extra)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = logs / f"{name}.log"
        with open(log, "wb") as handle:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                 "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
                cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
            )
        started[name] = (url, proc)
        _wait_healthy(url, proc, log)
        return url

    yield start
    for _, proc in started.values():
        _stop(proc)


@pytest.fixture(scope="module")
def driver(browser_tools, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--disable-background-networking", "--hide-scrollbars",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1800"):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


@pytest.fixture(scope="session")
def shipped_models_ready() -> bool:
    """True when the shipped emotion models are in male_models/ and female_models/."""
    return _shipped_models_ready()
