"""Streamlit web app: upload or record speech, see gender and emotion, with how far to trust them.

    streamlit run app.py        # or: make app  -> http://localhost:8501

A thin front over :mod:`pipeline`: the models and CSV rows come from ``Cascade`` and
``prediction_row``, what the page computes and draws from :mod:`pipeline.app_views`,
the "uncertain" marks from :mod:`pipeline.confidence`, the operator's switches from
:mod:`pipeline.app_settings`. This file lays out the widgets and keeps results in
the session. Two pages: this one (analyse) and ``pages/how_it_works.py`` (the model
cards and the measured figures). Operator settings: docs/app.md.
"""
from __future__ import annotations

import hashlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd
import streamlit as st

from pipeline.app_settings import SHIPPED_LABEL, AppSettings, read_settings
from pipeline.app_views import (
    EXAMPLES,
    EXAMPLES_DIR,
    FORMATS_TEXT,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_MB,
    SOFT_STATUSES,
    TIMELINE_MIN_S,
    ClipResult,
    analyse_clip,
    analyse_clips,
    bar_chart,
    plain_status,
    recording_words,
    summary_frame,
    voices_words,
    waveform_chart,
)
from pipeline.app_voices import segment_csv, segments_frame, voice_timeline_chart, voices_frame
from pipeline.batch import CSV_COLUMNS
from pipeline.cascade import Cascade
from pipeline.confidence import Judgement, percent, reliability_note

__all__ = ["MAX_UPLOAD_BYTES", "MAX_UPLOAD_MB", "RESULTS_KEY", "analyse_clip", "analyse_clips"]

DETAILS_PAGE = "pages/how_it_works.py"
RESULTS_KEY = "ser_results"  # st.session_state[RESULTS_KEY]: {clip_id(...): ClipResult}
EXAMPLES_KEY = "ser_examples"  # example clips added with the "Try an example" buttons
INPUTS_KEY = "ser_inputs"  # bumped by "Clear" so the upload and record widgets start empty
AUTO_KEY = "ser_analyse_now"  # set by an example button: analyse without pressing Analyse
ROUTING_WORDS = {"hard": "Model of the detected gender", "soft": "Both models, weighed by gender"}


# -- models ---------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def load_cascade(gender_model: str | None, routing: str, male_dir: str, female_dir: str,
                 denoise: bool = False) -> Cascade:
    """The cascade for a gender model (``None`` = shipped), routing and noise reduction, loaded once per process."""
    return Cascade.load(gender_model, male_dir=male_dir, female_dir=female_dir, routing=routing, denoise=denoise)


def app_settings() -> AppSettings:
    try:
        secrets = dict(st.secrets)
    except Exception:  # no secrets.toml: the environment alone decides
        secrets = {}
    return read_settings(secrets=secrets)


def clip_id(name: str, data: bytes) -> tuple[str, int, str]:
    """Identity of a clip on the page: ``(name, size, content hash)``."""
    return (name, len(data), hashlib.sha256(data).hexdigest())


# -- sidebar: the options only --------------------------------------------------------------------
def sidebar(settings: AppSettings) -> tuple[str | None, str, bool, str]:
    """Option widgets; returns ``(gender model or None, routing, denoise, settings label)``."""
    with st.sidebar:
        st.header("Options")
        gender_model = settings.gender_model
        options = settings.model_options()
        if options:
            choice = st.selectbox("Gender model", options, key="gender_choice",
                                  help="Which model tells the voice's gender; only the models the operator allows.")
            gender_model = settings.resolve(choice)
        routing = st.radio("Which emotion model answers", ["hard", "soft"], key="routing",
                           format_func=ROUTING_WORDS.get,
                           help="One model was trained on men's voices, one on women's. 'Both' helps when "
                                "the gender is unclear.")
        denoise = st.toggle("Noise reduction", value=False, key="denoise",
                            help="Cleans background noise first. Off by default: in tests it made the "
                                 "emotion answers slightly worse.")
    words = [gender_model or SHIPPED_LABEL, ROUTING_WORDS[routing].lower(), "noise reduction" if denoise else ""]
    return gender_model, routing, denoise, ", ".join(w for w in words if w)


# -- inputs ---------------------------------------------------------------------------------------
def _add_example(file: str) -> None:
    chosen = st.session_state.setdefault(EXAMPLES_KEY, [])
    if file not in chosen:
        chosen.append(file)
    st.session_state[AUTO_KEY] = True


def _clear() -> None:
    st.session_state[RESULTS_KEY] = {}
    st.session_state[EXAMPLES_KEY] = []
    st.session_state[INPUTS_KEY] = st.session_state.get(INPUTS_KEY, 0) + 1


def collect_inputs() -> list[tuple[str, bytes]]:
    """Uploads, the recording and the chosen examples as ``(name, bytes)``, read from memory."""
    generation = st.session_state.get(INPUTS_KEY, 0)
    suffix = f"_{generation}" if generation else ""
    uploads = st.file_uploader(
        f"Speech recordings: {FORMATS_TEXT}; up to {MAX_UPLOAD_MB} MB each (an hour of WAV)",
        accept_multiple_files=True, key=f"uploads{suffix}", max_upload_size=MAX_UPLOAD_MB,
    ) or []  # no type= filter: a file the app cannot read is named on the page with the reason
    recording = st.audio_input("Or record from the microphone: speak for 3-10 seconds (one voice)",
                               key=f"recording{suffix}")
    st.markdown("**No recording at hand? Try an example** (actors from RAVDESS; one click analyses it):")
    columns = st.columns(len(EXAMPLES))
    for column, (file, label) in zip(columns, EXAMPLES):
        column.button(label, key=f"example_{file}", on_click=_add_example, args=(file,), width="stretch")
    clips: list[tuple[str, bytes]] = []
    names: set[str] = set()
    items = [(u.name, u.getvalue()) for u in uploads]
    if recording is not None:
        items.append(("recording.wav", recording.getvalue()))
    for file in st.session_state.get(EXAMPLES_KEY, []):
        items.append((f"example: {file}", (EXAMPLES_DIR / file).read_bytes()))
    for name, data in items:
        base, n = name, 1
        while name in names:  # two uploads with the same name stay apart
            n += 1
            name = f"{base} ({n})"
        names.add(name)
        clips.append((name, data))
    return clips


# -- results --------------------------------------------------------------------------------------
def show_answer(column, title: str, j: Judgement) -> None:
    measured = (f"In tests, answers this sure were right {percent(j.measured)} of the time ({j.clips} clips)."
                if j.measured is not None else "")
    if not j.uncertain:
        column.metric(title, j.label.capitalize(), f"{j.probability:.0%} probability",
                      delta_color="off", delta_arrow="off", help=measured)
        column.caption(measured)
        return
    with column.container(border=True):
        st.markdown(f"{title}  \n:orange-badge[:material/help: Uncertain] :orange[leans **{j.label}**, "
                    f"{percent(j.probability)}]")
        st.caption(f"Uncertain because {j.reason}. {measured}")


def _selected_start(result: ClipResult, index: int) -> float | None:
    """Start (s) of the segment selected in the segment table of clip ``index``, if any."""
    try:
        rows = st.session_state[f"segments_table_{index}"]["selection"]["rows"]
        return float(result.recording.segments[rows[0]].start_s) if rows else None
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def render_voices(result: ClipResult, index: int) -> None:
    """Who speaks when: a row per voice, the timeline by voice, the segment table and its CSV."""
    rec = result.recording
    st.markdown(f"#### Who speaks when\nThe recording lasts {result.prediction.duration_s:.0f} s, so it is split "
                "into speech segments grouped by voice; each voice's gender is decided over all its speech, "
                "each segment's emotion by the model of that gender.")
    if rec is None or not rec.ok:
        what, advice = recording_words(rec) if rec is not None else ("Voices not analysed", "")
        st.warning(f"Voices: {what.lower()}. {advice}" + (f"  \nDetails: {rec.error}." if rec and rec.error else ""),
                   icon=":material/groups:")
        return
    st.markdown(f"**{voices_words(result).capitalize()}** in {rec.speech_s:.0f} s of speech "
                "(one speaker may show as two voices, or two similar voices as one).")
    st.table(voices_frame(rec).set_index("voice"))
    st.altair_chart(voice_timeline_chart(rec), width="stretch")
    st.caption("Select a segment in the table to play the recording from its start (player at the top).")
    st.dataframe(segments_frame(rec), hide_index=True, key=f"segments_table_{index}", on_select="rerun",
                 selection_mode="single-row")
    st.download_button("Download the segments (CSV)", segment_csv(rec, result.name),
                       file_name=f"{result.name.rsplit('.', 1)[0]}_segments.csv", mime="text/csv",
                       key=f"segments_csv_{index}")


def render_clip(result: ClipResult, data: bytes, index: int) -> None:
    p = result.prediction
    if data:
        start = _selected_start(result, index) if result.long else None
        st.audio(data, format=_mime(result.name), start_time=start or 0, autoplay=start is not None)
    for note in result.notes:
        st.info(note)
    if result.long:
        render_voices(result, index)
        st.markdown("#### Whole recording, all voices together")
    g, e = result.gender, result.emotion
    c1, c2, c3 = st.columns(3)
    show_answer(c1, "Gender" + (" (whole recording, all voices)" if result.long else ""), g)
    show_answer(c2, "Emotion" + (" (whole recording, all voices)" if result.long else ""), e)
    model = {"blended": "both emotion models"}.get(p.emotion_model, f"the {p.emotion_model}-voice emotion model")
    c3.metric("Speech heard", f"{p.speech_duration_s:.1f} s", f"answered by {model}",
              delta_color="off", delta_arrow="off")
    if p.speech_duration_s < 1.5:
        c3.caption("Very short clips are harder to judge: 3-10 seconds of speech works best.")
    tab_bars, tab_wave, tab_spec = st.tabs(["Emotions", "Waveform", "Spectrogram"])
    with tab_bars:
        st.altair_chart(bar_chart(p.emotion_probabilities), width="stretch")
        st.caption("Dashed line: below it an emotion answer counts as uncertain.")
    with tab_wave:
        if result.waveform is not None:
            st.altair_chart(waveform_chart(result.waveform), width="stretch")
    with tab_spec:
        if result.spectrogram is not None:
            st.image(result.spectrogram, width="stretch",
                     caption="Spectrogram: time across, pitch/frequency up; brighter = louder")


def render_refused(result: ClipResult) -> None:
    p = result.prediction
    what, advice = plain_status(p)
    text = f"**{result.name}** was not analysed: {what.lower()}. {advice}" + (f"  \nDetails: {p.error}." if p.error else "")
    (st.warning if p.status in SOFT_STATUSES else st.error)(text)


def _mime(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower()
    return {"mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg", "oga": "audio/ogg", "opus": "audio/ogg",
            "m4a": "audio/mp4", "mp4": "audio/mp4", "aac": "audio/aac", "webm": "audio/webm", "weba": "audio/webm",
            "mka": "audio/x-matroska", "amr": "audio/amr", "wma": "audio/x-ms-wma"}.get(ext, "audio/wav")


def run_analysis(settings: AppSettings, gender_model, routing, denoise, label, todo) -> None:
    """Analyse ``todo`` = ``[(clip id, name, bytes)]`` with a progress bar over clips (and speech segments)."""
    store = st.session_state[RESULTS_KEY]
    bar = st.progress(0.0, text="Loading the models (the first time takes up to a minute)...")
    try:
        cascade = load_cascade(gender_model, routing, settings.male_dir, settings.female_dir, denoise=denoise)
    except Exception as exc:
        bar.empty()
        st.error(f"Could not load the models (gender model: {gender_model or 'shipped'}): {exc}")
        return
    try:
        for k, (key, name, data) in enumerate(todo):
            def progress(fraction: float, text: str, k=k) -> None:
                bar.progress(min(1.0, (k + fraction) / len(todo)),
                             text=f"Recording {k + 1} of {len(todo)}: {text}")
            result = analyse_clip(cascade, name, data, progress)
            result.settings = label
            store[key] = result
    except Exception as exc:  # never a traceback on the page
        st.error(f"Analysis failed: {type(exc).__name__}: {exc}")
    bar.empty()


def analyse_page() -> None:
    st.title("Speech emotion recognition")
    st.markdown(
        "Upload a recording of one person speaking, record one, or try an example: the app tells the voice's "
        "**gender** and the speaker's **emotion** (one of eight), and how sure it is. Audio stays in memory and "
        f"is not stored. Recordings over {TIMELINE_MIN_S:.0f} s are split by voice: who speaks when, with each "
        "turn's emotion. Trained on acted and read speech "
        "(English, Amharic, Italian): research and non-commercial use only."
    )
    settings = app_settings()
    gender_model, routing, denoise, label = sidebar(settings)
    clips = collect_inputs()
    store: dict[tuple, ClipResult] = st.session_state.setdefault(RESULTS_KEY, {})
    ids = [clip_id(name, data) for name, data in clips]
    for gone in [k for k in store if k not in ids]:
        del store[gone]  # clips no longer on the page: free their results
    pending = [i for i, k in enumerate(ids) if k not in store]
    stale = [i for i, k in enumerate(ids) if k in store and store[k].settings != label]

    b1, b2, _ = st.columns([1, 1, 4])
    pressed = b1.button("Analyse", type="primary", key="analyse", disabled=not (pending or stale), width="stretch")
    b2.button("Clear", key="clear", on_click=_clear, disabled=not clips, width="stretch",
              help="Remove every recording and result from the page.")
    notice = st.empty()
    if stale and not pressed:
        with notice.container():
            st.info(f"You changed an option: the results below were made with other options "
                    f"({store[ids[stale[0]]].settings}).")
            pressed = st.button("Re-analyse with the new options", key="reanalyse")
    auto = st.session_state.pop(AUTO_KEY, False)
    if (pressed or auto) and (pending or stale):
        notice.empty()
        run_analysis(settings, gender_model, routing, denoise, label,
                     [(ids[i], *clips[i]) for i in sorted(pending + stale)])
        pending = [i for i, k in enumerate(ids) if k not in store]
        if not [i for i, k in enumerate(ids) if k in store and store[k].settings != label]:
            stale = []
    if not clips:
        st.info("Add a recording above (or record one, or try an example), then press **Analyse**.")
        return
    if pending:
        st.caption(f"{len(pending)} recording(s) waiting: press **Analyse**.")
    done = [(i, store[k]) for i, k in enumerate(ids) if k in store]
    if done:
        show_results(done, clips)


def show_results(done: list[tuple[int, ClipResult]], clips: list[tuple[str, bytes]]) -> None:
    results = [r for _, r in done]
    n_ok = sum(r.prediction.ok for r in results)
    failed = len(results) - n_ok
    summary = f"{len(results)} recording(s): {n_ok} analysed" + (f", {failed} not analysed (see why below)"
                                                                   if failed else "")
    st.markdown(f"### Results\n{summary}.")
    if n_ok:
        st.markdown(reliability_note())
        st.page_link(DETAILS_PAGE, label="How the models were tested, and the model cards",
                     icon=":material/info:")
    for result in results:
        if not result.prediction.ok:
            render_refused(result)
    if len(results) > 1:
        st.table(summary_frame(results).set_index("file"))
    table = pd.DataFrame([r.row for r in results], columns=list(CSV_COLUMNS))
    st.download_button("Download all results (CSV)", table.to_csv(index=False).encode("utf-8"),
                       file_name="emotion_results.csv", mime="text/csv", key="download_csv")
    analysed = [(i, r) for i, r in done if r.prediction.ok]
    for i, result in analysed:
        try:
            if len(analysed) == 1 and len(results) == 1:
                with st.container(border=True):
                    st.subheader(result.name)
                    render_clip(result, clips[i][1], i)
            else:
                g, e = result.gender, result.emotion
                flag = " · uncertain" if (g.uncertain or e.uncertain) else ""
                title = (f"{result.name}: {voices_words(result)}" if result.long
                         else f"{result.name}: {g.label}, {e.label}{flag}")
                with st.expander(title, expanded=len(analysed) == 1):
                    render_clip(result, clips[i][1], i)
        except Exception as exc:  # one broken view never hides the others
            st.error(f"Could not display the result for {result.name}: {type(exc).__name__}: {exc}")


def main() -> None:
    st.set_page_config(page_title="Speech emotion recognition", layout="wide", page_icon=":material/graphic_eq:")
    page = st.navigation([
        st.Page(analyse_page, title="Analyse speech", icon=":material/graphic_eq:", default=True),
        st.Page(DETAILS_PAGE, title="How it works", icon=":material/info:"),
    ])
    page.run()


if __name__ == "__main__":  # streamlit run / AppTest; importing app only defines the helpers
    main()
