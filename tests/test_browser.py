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
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
SERVER_START_S = 120  # the servers and the browser are fixtures of conftest.py: servers, driver
RESULT_WAIT_S = 240  # model loading (TensorFlow + torch) on a busy 2-core machine, then the analysis
WIDTHS = {"desktop": 1400, "phone": 390}
MAX_SHOT_HEIGHT = 4000


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

    box = wait_for(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"), 60, "the upload box")[0]
    box.send_keys("\n".join(str(p) for p in paths))
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


def at_both_widths(drv, check) -> None:
    """Run ``check(width_label)`` at 1400 px and at 390 px (phone), then go back to 1400 px."""
    for label, width in WIDTHS.items():
        drv.set_window_size(width, 1800)
        time.sleep(2.0)  # layout and charts follow the new width
        check(label)
    drv.set_window_size(WIDTHS["desktop"], 1800)
    time.sleep(1.0)


def assert_no_sideways_page(drv, label: str) -> None:
    """The page itself never scrolls sideways (wide tables scroll inside their own box)."""
    over = drv.execute_script(
        "const m = document.querySelector('[data-testid=\"stMain\"]');"
        "return [m.scrollWidth, m.clientWidth, document.documentElement.scrollWidth, window.innerWidth];")
    assert over[0] <= over[1] + 2 and over[2] <= over[3] + 2, (label, over)


def tables(drv) -> list[dict]:
    """Each st.table: its header texts, whether it fits its box or scrolls sideways, and its box's overflow."""
    return drv.execute_script("""
        return [...document.querySelectorAll('[data-testid="stTable"]')].map(box => {
          const table = box.querySelector('table');
          return {headers: [...table.querySelectorAll('thead th')].map(th => th.innerText.trim()),
                  fits: box.scrollWidth <= box.clientWidth + 1,
                  overflow: getComputedStyle(box).overflowX,
                  cells_narrowest: Math.min(...[...table.querySelectorAll('thead th')].map(th => th.getBoundingClientRect().width))};
        });""")


def assert_tables_whole(drv, label: str) -> None:
    """No squeezed or dropped columns: every column at least 40 px wide; a table that does not fit scrolls."""
    for t in tables(drv):
        assert t["cells_narrowest"] >= 40, (label, t)
        assert t["fits"] or t["overflow"] in ("auto", "scroll"), (label, t)


def progress_texts(drv, until: str, timeout: float = RESULT_WAIT_S) -> list[tuple[float, str]]:
    """Poll the progress bar's text until ``until`` is on the page: ``[(seconds, text)]`` at each change."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            bars = drv.find_elements(By.CSS_SELECTOR, "[data-testid='stProgress']")
            text = " ".join(b.text for b in bars if b.is_displayed()).strip()
        except StaleElementReferenceException:
            continue
        if text and (not seen or seen[-1][1] != text):
            seen.append((time.monotonic() - start, text))
        if until in body_text(drv) and not text:
            return seen
        time.sleep(0.25)
    pytest.fail(f"{until!r} did not appear; progress seen: {seen}")


def two_voice_recording(tmp_path: Path) -> Path:
    man, sr = sf.read(ROOT / "examples" / "man_calm.flac", dtype="float32")
    woman, _ = sf.read(ROOT / "examples" / "woman_angry.flac", dtype="float32")
    gap = np.zeros(sr // 2, dtype=np.float32)
    turns = []
    while sum(t.size for t in turns) < 36 * sr:  # a man and a woman taking turns for about 36 s
        turns += [man, gap, man, gap, woman, gap, woman, gap]
    path = tmp_path / "conversation.wav"
    sf.write(path, np.concatenate(turns), sr)
    return path


def click_first_timeline_bar(drv) -> None:
    """Click the first bar (the first segment, voice A) of the timeline, the first chart of a recording of several voices."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    charts = [c for c in drv.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart']") if c.is_displayed()]
    assert charts, "no chart on the page"
    bars = charts[0].find_elements(By.CSS_SELECTOR, "g.mark-rect path")
    assert bars, "no bars on the timeline"
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", charts[0])
    time.sleep(0.5)
    ActionChains(drv).move_to_element(bars[0]).click().perform()


def click_segment_row(drv, row: int) -> None:
    """Click a cell (not the checkbox) of a row of the segment table (a canvas grid)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    grid = drv.find_elements(By.CSS_SELECTOR, "[data-testid='stDataFrame']")[-1]
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", grid)
    time.sleep(0.5)
    rect = grid.rect
    x = min(rect["width"] - 10, 140) - rect["width"] / 2  # the "to" / "voice" column, clear of the checkbox
    y = 35 + 35 * row + 17 - rect["height"] / 2  # header, then rows of 35 px
    ActionChains(drv).move_to_element_with_offset(grid, int(x), int(y)).click().perform()


# ----------------------------------------------------------------------------- tests


def test_start_page_and_how_it_works(servers, driver, tmp_path):
    """Start page wording and options and "How it works" for visitors."""
    url = servers("main")
    open_page(driver, url)

    def start(label: str) -> None:
        wait_text(driver, "400 MB", 30)  # the uploader's label comes a moment after the page's first text
        text = body_text(driver)
        assert "400 MB" in text and "Try an example" in text and "3-10 seconds" in text
        assert "one person speaking" not in text and "Shipped" not in text
        assert "Noise reduction" not in text  # the option left the page
        from selenium.webdriver.common.by import By

        options = [e for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stExpander']")
                   if "Options" in e.text]
        assert options and options[0].is_displayed() and options[0].rect["x"] >= 0  # on the page
        assert options[0].rect["x"] + options[0].rect["width"] <= WIDTHS[label] + 1
        assert "How it works: what the models can and cannot do" in text  # the link, before any result
        assert_no_sideways_page(driver, label)

    at_both_widths(driver, start)
    screenshots(driver, tmp_path, "start")
    open_page(driver, url, "how_it_works")
    wait_text(driver, "What the models can do", 60)

    def details(label: str) -> None:
        text = body_text(driver)
        assert "What they cannot do" in text and "How sure is" in text
        for stale in ("python -m", "not separated", "4-second", "epochs", "issue", "Target"):
            assert stale not in text, (label, stale)
        assert re.search(r"emotion only \d+%-\d+%", text)  # corpora never seen, from the reports
        assert_tables_whole(driver, label)
        assert_no_sideways_page(driver, label)

    at_both_widths(driver, details)
    screenshots(driver, tmp_path, "how_it_works")


def test_example_clip_in_one_click(servers, driver, tmp_path):
    """One click answers; sure answers carry their probability and the test figure they assume."""
    open_page(driver, servers("main"))
    click_button(driver, "Woman, angry")
    # the answer is shown sure (a metric "Female") or uncertain ("leans female, 78%"): either way it names the gender
    def answered(d, label: str) -> bool:
        return label.capitalize() in shown_values(d) or f"leans {label}" in body_text(d)

    wait_for(driver, lambda d: answered(d, "female"), what="the gender answer")
    wait_idle(driver)

    def check(label: str) -> None:
        assert answered(driver, "angry")
        text = body_text(driver)
        assert "How reliable is this?" in text
        if "Angry" in shown_values(driver):  # a sure emotion says its test figure assumes the right gender
            assert "assumes the gender, which picks the emotion model, was right" in text
        assert "fairly sure" not in text
        assert_no_sideways_page(driver, label)

    at_both_widths(driver, check)
    assert_clean(driver)
    screenshots(driver, tmp_path, "example")


def test_several_files_with_a_voice_memo_and_a_refused_file(servers, driver, tmp_path):
    """An M4A voice memo, a file the app cannot read, a silent file and a FLAC: summary, wording, exports."""
    from selenium.webdriver.common.by import By

    from pipeline.app_views import UPLOAD_EXTENSIONS

    y, sr = sf.read(ROOT / "examples" / "man_calm.flac", dtype="float32")
    memo = write_m4a(tmp_path / "voice memo.m4a", y, sr)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording")
    hush = tmp_path / "hush.wav"
    sf.write(hush, np.zeros(2 * sr, dtype=np.float32), sr)
    open_page(driver, servers("main"))
    upload(driver, memo, notes, hush, ROOT / "examples" / "woman_sad.flac")
    # every file is named on the page, not only the first rows of the upload box
    assert "On the page: 4 recording(s): voice memo.m4a, notes.txt, hush.wav, woman_sad.flac" in body_text(driver)
    click_button(driver, "Analyse")
    wait_text(driver, "4 recording(s):")
    wait_idle(driver)

    def check(label: str) -> None:
        text = body_text(driver)
        # the refused file is named in the page text with its reason (not only on hover)
        assert "notes.txt was not analysed: not a format the app reads" in text and "Details: the app reads" in text
        # an uploaded silent file is not told to check the microphone
        assert "hush.wav was not analysed: silent or almost silent" in text
        assert "microphone" not in text.split("hush.wav was not analysed")[1].split("\n")[0]
        assert "woman_sad.flac: female, sad" in text
        # the summary shows the model's probability in full, no "fairly sure", every column whole
        [summary] = [t for t in tables(driver) if t["headers"][:2] == ["", "answer"] or "answer" in t["headers"]]
        assert summary["headers"][-3:] == ["answer", "model's probability", "status"], summary
        assert "fairly sure" not in text
        assert_tables_whole(driver, label)
        assert_no_sideways_page(driver, label)
        # both downloads offered
        labels = [b.text for b in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stDownloadButton'] button")]
        assert "Download all results (CSV)" in labels
        # nothing waits, so Analyse is disabled
        [analyse] = [b for b in driver.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == "Analyse"]
        assert not analyse.is_enabled()

    at_both_widths(driver, check)
    screenshots(driver, tmp_path, "several_files")
    assert_clean(driver)
    if "m4a" not in UPLOAD_EXTENSIONS:
        pytest.xfail("PyAV decoding has not landed in pipeline/audio.py: the M4A memo is refused (named on the page)")
    assert "voice memo.m4a: male" in body_text(driver)


def test_two_voices_get_the_who_speaks_when_view(servers, driver, tmp_path, shipped_models_ready):
    """Per-voice answers, consistent figures, click to play, progress that moves."""
    from selenium.webdriver.common.by import By

    open_page(driver, servers("main"))
    upload(driver, two_voice_recording(tmp_path))
    click_button(driver, "Analyse")
    steps = progress_texts(driver, "Who speaks when")  # the bar moves through the steps
    wait_idle(driver)
    texts_seen = " | ".join(t for _, t in steps)
    # each step's name is checked with a slowed model in test_app_views; here the speech is found too fast
    # to be seen every time, so: the bar reaches the segments and never stands still for long (the polling
    # itself adds up to a second)
    assert "segment" in texts_seen and len(steps) >= 3, steps
    gaps = [b - a for (a, _), (b, _) in zip(steps, steps[1:])]
    assert max(gaps) <= 4.0, steps

    def check(label: str) -> None:
        text = body_text(driver)
        match = re.search(r"(\d+) s of it is speech, from (\d+) voices", text)
        assert match, text[-3000:]
        speech_s, n_voices = int(match.group(1)), int(match.group(2))
        assert n_voices >= 2 and "Download the segments (CSV)" in text
        # no whole-recording answer presented as a fact; the summary has a row per voice
        assert "No single gender or emotion for the whole recording" in text
        assert "Gender" not in [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMetricLabel']")]
        assert "conversation.wav, voice A" in text and f"{n_voices} voices: see each voice below" in text
        if shipped_models_ready:  # a row per voice with its gender: the man speaks first
            assert re.search(r"\bA\s+male \(\d+", text) and re.search(r"\bfemale \(\d+", text), text
        assert re.search(r"voice A\s+(uncertain: leans )?(fe)?male, mostly \w+ \(\d+% of its speaking time\)", text)
        # the voices' speech adds up to the speech stated; time shares are labelled as such
        voice_seconds = [float(s) for s in re.findall(r"([\d.]+) s \(\d+% of all speech\)", text)]
        assert len(voice_seconds) == n_voices and abs(sum(voice_seconds) - speech_s) <= 1.0, voice_seconds
        assert "emotions (share of its speaking time)" in text and "a share of time" in text
        [voices] = [t for t in tables(driver) if "turns" in t["headers"]]
        assert voices["headers"][-2:] == ["turns", "first heard"]  # not cut at phone width
        assert_tables_whole(driver, label)
        assert_no_sideways_page(driver, label)
        labels = [b.text for b in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stDownloadButton'] button")]
        assert {"Download all results (CSV)", "Download the voices (CSV)"} <= set(labels)

    at_both_widths(driver, check)
    assert_clean(driver)

    def play(label: str) -> None:
        # a click on a cell of the segment table plays from that segment, the player close to the click
        click_segment_row(driver, 2 if label == "desktop" else 3)
        wait_text(driver, "Playing from", 60)
        wait_idle(driver)
        grid = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stDataFrame']")[-1]
        players = [a for a in driver.find_elements(By.CSS_SELECTOR, "audio") if a.get_attribute("autoplay")]
        assert players, "no player started"
        distance = grid.rect["y"] - (players[0].rect["y"] + players[0].rect["height"])
        assert 0 <= distance <= 250, (label, distance)  # just above the table, not at the top of the page
        assert "Playing from" in body_text(driver)

    at_both_widths(driver, play)

    def play_from_timeline(label: str) -> None:
        # a click on a bar of the timeline plays from that segment too, also after a click in the table
        click_segment_row(driver, 4)
        wait_idle(driver)
        before = re.search(r"Playing from [\d.]+ s \(voice \w+", body_text(driver)).group(0)
        click_first_timeline_bar(driver)
        wait_for(driver, lambda d: "Playing from" in body_text(d) and re.search(
            r"Playing from [\d.]+ s \(voice A", body_text(d)) and re.search(
            r"Playing from [\d.]+ s \(voice \w+", body_text(d)).group(0) != before, 60,
            f"the player to start from the clicked bar ({label}; before: {before})")
        wait_idle(driver)

    at_both_widths(driver, play_from_timeline)
    screenshots(driver, tmp_path, "conversation")  # with the player started from a clicked segment


def test_ambiguous_voice_is_marked_uncertain(servers, driver, tiny_models, tmp_path):
    """An uncertain gender makes the emotion visibly uncertain, says why, and quotes no misleading figure."""
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

    def check(label: str) -> None:
        text = body_text(driver)
        assert text.count("Uncertain because") == 2 and "a coin toss" in text and "leans" in text
        assert "Female" not in shown_values(driver) and "Male" not in shown_values(driver)
        assert "Uncertain because the gender is uncertain" in text and "the test figures do not apply" in text
        emotion_box = text.split("Uncertain because the gender is uncertain")[1].split("Speech found")[0]
        assert "were right" not in emotion_box  # no "right 95% of the time" beside an uncertain emotion
        assert_no_sideways_page(driver, label)

    at_both_widths(driver, check)
    assert_clean(driver)
    screenshots(driver, tmp_path, "uncertain")


def test_uploads_and_results_survive_how_it_works(servers, driver, tmp_path):
    """Going to "How it works" and back keeps the uploads and the results, at both widths."""
    from selenium.webdriver.common.by import By

    open_page(driver, servers("main"))
    upload(driver, ROOT / "examples" / "man_sad.flac")
    click_button(driver, "Analyse")
    wait_text(driver, "1 recording(s): 1 analysed")
    wait_idle(driver)
    for label, width in WIDTHS.items():
        driver.set_window_size(width, 1800)
        time.sleep(1.5)
        link = next(a for a in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stPageLink'] a")
                    if "How it works" in a.text)
        driver.execute_script("arguments[0].click();", link)
        wait_text(driver, "What the models can do", 60)
        wait_idle(driver)
        driver.execute_script("window.history.back();")
        wait_text(driver, "1 recording(s): 1 analysed", 60)
        wait_idle(driver)
        text = body_text(driver)
        assert "On the page: 1 recording(s): man_sad.flac" in text, label
        assert "man_sad.flac" in text and "waiting: press" not in text, label
