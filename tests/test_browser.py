"""End to end in a real browser: `streamlit run app.py` driven by headless Chromium via Selenium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and
``selenium``; skipped with the reason when any is missing. Uses the shipped models
when the emotion models are present, else the tiny known-answer models.
"""
from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SERVER_START_S = 120
RESULT_WAIT_S = 150  # model loading (TensorFlow + torch) on a busy 2-core machine, then the analysis


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


def test_upload_and_analyse_in_chromium(shared_data, tiny_models, tmp_path):
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(binary):
            pytest.skip(f"{binary} not found: install Debian's chromium and chromium-driver "
                        "(apt-get install -y chromium chromium-driver) to run the browser test")
    selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -r requirements.txt)")
    del selenium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    with open(shared_data / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["corpus"] == "ravdess" and r["split"] == "test"]
    if not rows:
        pytest.skip("no RAVDESS test-split clip in the manifest")
    clip = shared_data / rows[0]["path"]

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", HF_HUB_OFFLINE="1")
    if not _shipped_models_ready():  # still being trained: exercise the app with the tiny models
        env["SER_MALE_MODEL_DIR"] = str(tiny_models["male"])
        env["SER_FEMALE_MODEL_DIR"] = str(tiny_models["female"])
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "streamlit.log"
    proc = None
    driver = None
    try:
        with open(log, "wb") as log_handle:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                 "--server.port", str(port), "--server.address", "127.0.0.1",
                 "--browser.gatherUsageStats", "false"],
                cwd=ROOT, env=env, stdout=log_handle, stderr=subprocess.STDOUT,
            )
        _wait_healthy(url, proc, log)

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--user-data-dir={tmp_path / 'chromium-profile'}", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--window-size=1400,2400"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(60)
        driver.get(url)
        wait = WebDriverWait(driver, SERVER_START_S)
        file_input = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        file_input.send_keys(str(clip))
        # once the upload has reached the server, Analyse is enabled and the clip is listed as pending
        def analyse_button(d):
            for button in d.find_elements(By.CSS_SELECTOR, "button[data-testid='stBaseButton-primary']"):
                if button.text.strip() == "Analyse" and button.is_enabled():
                    return button
            return False

        wait.until(lambda d: "not analysed yet" in d.find_element(By.TAG_NAME, "body").text)
        wait.until(analyse_button).click()

        def result_shown(d) -> bool:
            values = [e.text.strip() for e in d.find_elements(By.CSS_SELECTOR, "[data-testid='stMetricValue']")]
            labels = [e.text.strip() for e in d.find_elements(By.CSS_SELECTOR, "[data-testid='stMetricLabel']")]
            return "Emotion" in labels and ("Male" in values or "Female" in values)

        charts = "[data-testid*='VegaLite'] canvas, [data-testid*='VegaLite'] svg, .vega-embed canvas, .vega-embed svg"
        try:
            WebDriverWait(driver, RESULT_WAIT_S, poll_frequency=1).until(result_shown)
            # the probability bar chart is drawn by vega-embed after the metrics appear
            WebDriverWait(driver, 60, poll_frequency=1).until(lambda d: d.find_elements(By.CSS_SELECTOR, charts))
        finally:
            driver.save_screenshot(str(tmp_path / "app.png"))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Traceback" not in body and "Error" not in body
        assert driver.find_elements(By.CSS_SELECTOR, "[data-testid='stDownloadButton']")
        print(f"screenshot: {tmp_path / 'app.png'}")
        keep = os.environ.get("SER_SCREENSHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "app.png", Path(keep) / "app.png")
    finally:
        if driver is not None:
            driver.quit()
        if proc is not None:
            _stop(proc)
