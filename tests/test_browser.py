"""End to end in a real browser: `streamlit run app.py` driven by headless Chromium via Selenium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and
``selenium``; skipped with the reason when any is missing. One server runs the shipped
models (the tiny known-answer emotion models while the shipped ones are missing), a
second one the tiny 50/50 gender model (``SER_GENDER_MODEL``) for the "uncertain" marks.

Every test saves screenshots at 1400 px and 390 px (phone) width to its tmp folder and,
when ``SER_SCREENSHOT_DIR`` is set, copies them there (palette PNGs, for docs/screenshots/):

    SER_SCREENSHOT_DIR=docs/screenshots pytest tests/test_browser.py
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SERVER_START_S = 120
RESULT_WAIT_S = 240  # model loading (TensorFlow + torch) on a busy 2-core machine, then the analysis
WIDTHS = {"desktop": 1400, "phone": 390}
MAX_SHOT_HEIGHT = 4000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _shipped_models_ready() -> bool:
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


# ----------------------------------------------------------------------------- helpers


def body_text(drv) -> str:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.TAG_NAME, "body").text


def wait_for(drv, condition, timeout: float = RESULT_WAIT_S, what: str = ""):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(drv, timeout, poll_frequency=1).until(condition)
    except TimeoutException:
        pytest.fail(f"timed out waiting for {what}; the page says:\n{body_text(drv)[-3000:]}")


def wait_text(drv, text: str, timeout: float = RESULT_WAIT_S) -> None:
    wait_for(drv, lambda d: text in body_text(d), timeout, repr(text))


def wait_idle(drv, timeout: float = 60) -> None:
    """Until Streamlit has finished the script run (no status widget) and vega charts are drawn."""
    from selenium.webdriver.common.by import By

    def idle(d) -> bool:
        running = d.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
        return not any(e.is_displayed() and "Running" in e.text for e in running)

    wait_for(drv, idle, timeout, "the script run to finish")
    time.sleep(1.5)  # charts render after the run


def open_page(drv, url: str, path: str = "") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    drv.set_window_size(WIDTHS["desktop"], 1800)
    drv.get(f"{url}/{path}")
    wait_for(drv, EC.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stMain']")), SERVER_START_S,
             "the page")
    wait_idle(drv)


def click_button(drv, label: str) -> None:
    from selenium.webdriver.common.by import By

    def button(d):
        for b in d.find_elements(By.CSS_SELECTOR, "button"):
            if b.text.strip() == label and b.is_enabled() and b.is_displayed():
                return b
        return False

    b = wait_for(drv, button, 120, f"an enabled {label!r} button")
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", b)
    b.click()


def upload(drv, *paths: Path) -> None:
    from selenium.webdriver.common.by import By

    drv.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys("\n".join(str(p) for p in paths))
    wait_text(drv, "waiting: press", 120)


def screenshots(drv, tmp_path: Path, view: str) -> list[Path]:
    """The whole page at each width of :data:`WIDTHS` (``<view>_<width>.png``); copied to SER_SCREENSHOT_DIR."""
    saved = []
    for label, width in WIDTHS.items():
        drv.set_window_size(width, 1200)
        time.sleep(1.5)
        height = drv.execute_script(
            "const m = document.querySelector('[data-testid=\"stMain\"]');"
            "const c = m && m.firstElementChild;"
            "return Math.max(document.body.scrollHeight, m ? m.scrollHeight : 0, c ? c.scrollHeight : 0);")
        drv.set_window_size(width, min(MAX_SHOT_HEIGHT, int(height) + 140))
        time.sleep(2.0)  # charts re-layout to the new width
        path = tmp_path / f"{view}_{label}.png"
        drv.save_screenshot(str(path))
        saved.append(path)
        keep = os.environ.get("SER_SCREENSHOT_DIR")
        if keep:
            from PIL import Image

            Path(keep).mkdir(parents=True, exist_ok=True)
            with Image.open(path) as image:
                image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
                    Path(keep) / path.name, optimize=True)
    drv.set_window_size(WIDTHS["desktop"], 1800)
    print("screenshots:", *saved)
    return saved


def assert_clean(drv) -> None:
    text = body_text(drv)
    assert "Traceback" not in text and "Analysis failed" not in text, text[-2000:]


def shown_values(drv) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text.strip() for e in drv.find_elements(By.CSS_SELECTOR, "[data-testid='stMetricValue']")]


def write_m4a(path: Path, y: np.ndarray, sr: int) -> Path:
    """An AAC-in-MP4 voice memo, as an iPhone saves it, encoded with PyAV."""
    av = pytest.importorskip("av", reason="PyAV is not installed")
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(y.astype(np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


# ----------------------------------------------------------------------------- tests


def test_start_page_and_how_it_works(servers, driver, tmp_path):
    url = servers("main")
    open_page(driver, url)
    text = body_text(driver)
    assert "400 MB" in text and "Try an example" in text and "3-10 seconds" in text
    screenshots(driver, tmp_path, "start")
    open_page(driver, url, "how_it_works")
    wait_text(driver, "How reliable is it?", 60)
    assert "About the models" in body_text(driver)
    screenshots(driver, tmp_path, "how_it_works")


def test_example_clip_in_one_click(servers, driver, tmp_path):
    open_page(driver, servers("main"))
    click_button(driver, "Woman, angry")
    # the answer is shown sure (a metric "Female") or uncertain ("leans female, 78%"): either way it names the gender
    def answered(d, label: str) -> bool:
        return label.capitalize() in shown_values(d) or f"leans {label}" in body_text(d)

    wait_for(driver, lambda d: answered(d, "female"), what="the gender answer")
    wait_idle(driver)
    assert answered(driver, "angry")
    assert "How reliable is this?" in body_text(driver)
    assert_clean(driver)
    screenshots(driver, tmp_path, "example")


def test_several_files_with_a_voice_memo_and_a_refused_file(servers, driver, tmp_path):
    """An M4A voice memo made with PyAV, a file the app cannot read, and a FLAC: summary table first."""
    from pipeline.app_views import UPLOAD_EXTENSIONS

    y, sr = sf.read(ROOT / "examples" / "man_calm.flac", dtype="float32")
    memo = write_m4a(tmp_path / "voice memo.m4a", y, sr)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording")
    open_page(driver, servers("main"))
    upload(driver, memo, notes, ROOT / "examples" / "woman_sad.flac")
    click_button(driver, "Analyse")
    wait_text(driver, "3 recording(s):")
    wait_idle(driver)
    text = body_text(driver)
    # the refused file is named in the page text with its reason (not only on hover)
    assert "notes.txt was not analysed: not a format the app reads" in text and "Details: the app reads" in text
    assert "woman_sad.flac: female, sad" in text
    screenshots(driver, tmp_path, "several_files")
    assert_clean(driver)
    if "m4a" not in UPLOAD_EXTENSIONS:
        pytest.xfail("PyAV decoding has not landed in pipeline/audio.py: the M4A memo is refused (named on the page)")
    assert "voice memo.m4a: male" in text and "2 analysed, 1 not analysed" in text


def test_two_voices_get_the_who_speaks_when_view(servers, driver, tmp_path):
    man, sr = sf.read(ROOT / "examples" / "man_calm.flac", dtype="float32")
    woman, _ = sf.read(ROOT / "examples" / "woman_angry.flac", dtype="float32")
    gap = np.zeros(sr // 2, dtype=np.float32)
    turns = []
    while sum(t.size for t in turns) < 36 * sr:  # a man and a woman taking turns for about 36 s
        turns += [man, gap, man, gap, woman, gap, woman, gap]
    path = tmp_path / "conversation.wav"
    sf.write(path, np.concatenate(turns), sr)
    open_page(driver, servers("main"))
    upload(driver, path)
    click_button(driver, "Analyse")
    wait_text(driver, "Who speaks when")
    wait_idle(driver)
    text = body_text(driver)
    assert "2 voices" in text and "Download the segments (CSV)" in text
    assert "Gender (whole recording, all voices)" in text and "may hold more than one speaker" not in text
    if _shipped_models_ready():  # a row per voice with its gender: the man speaks first
        assert re.search(r"\bA\s+male \(\d+%\)", text) and re.search(r"\bB\s+female \(\d+%\)", text), text
    assert_clean(driver)
    screenshots(driver, tmp_path, "conversation")


def test_ambiguous_voice_is_marked_uncertain(servers, driver, tiny_models, tmp_path):
    from pipeline.testing import speech_like

    url = servers("even", SER_GENDER_MODEL=str(tiny_models["even_gender"]),
                  SER_MALE_MODEL_DIR=str(tiny_models["male"]), SER_FEMALE_MODEL_DIR=str(tiny_models["female"]))
    path = tmp_path / "ambiguous.wav"
    sf.write(path, speech_like(3.0), 16000)
    open_page(driver, url)
    upload(driver, path)
    click_button(driver, "Analyse")
    wait_text(driver, "Uncertain because")
    wait_idle(driver)
    text = body_text(driver)
    assert "Uncertain" in text and "a coin toss" in text and "leans" in text
    assert "Female" not in shown_values(driver) and "Male" not in shown_values(driver)
    assert_clean(driver)
    screenshots(driver, tmp_path, "uncertain")
