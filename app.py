"""Streamlit web app: upload or record speech, see gender and emotion, with how far to trust them.

    streamlit run app.py        # or: make app  -> http://localhost:8501

A thin front over :mod:`pipeline`: the models and CSV rows come from ``Cascade`` and
``prediction_row``, what the page computes and draws from :mod:`pipeline.app_views` and
:mod:`pipeline.app_voices`, the downloads from :mod:`pipeline.app_exports`, the "uncertain"
marks from :mod:`pipeline.confidence`, what the session keeps from :mod:`pipeline.app_state`,
the operator's switches from :mod:`pipeline.app_settings`. This file lays out the widgets.
Two pages: this one (analyse) and ``pages/how_it_works.py``. Operator settings: docs/app.md.
"""
from __future__ import annotations

import os
from functools import partial

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The page answers through the ONNX exports of the shipped networks: the same labels as PyTorch and
# Keras on every test clip, probabilities within 1e-5 (docs/runtime.md), and no TensorFlow import,
# so the first answer after a cold start comes in seconds. An operator may set SER_BACKEND=auto.
os.environ.setdefault("SER_BACKEND", "onnx")

import streamlit as st

from pipeline import app_state
from pipeline.app_exports import RESULTS_COLUMNS, VOICE_CSV_COLUMNS, csv_bytes, results_rows, voices_rows
from pipeline.app_models import CascadeOptions, ModelLoader, warm_up
from pipeline.app_settings import SHIPPED_LABEL, AppSettings, read_settings
from pipeline.app_state import AUTO_KEY, INPUTS_KEY, MESSAGES_KEY, RESULTS_KEY, Clip, clip_id
from pipeline.app_views import (
    EXAMPLES,
    EXAMPLES_DIR,
    FORMATS_TEXT,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_MB,
    PLAIN_ENOUGH,
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
from pipeline.app_voices import TIMELINE_PICK, segment_csv, segments_frame, voice_timeline_chart, voices_frame
from pipeline.confidence import (
    EMOTION_BINS,
    EMOTION_UNCERTAIN_BELOW,
    GENDER_BINS,
    GENDER_UNCERTAIN_BELOW,
    Judgement,
    percent,
    reliability_note,
)

__all__ = ["MAX_UPLOAD_BYTES", "MAX_UPLOAD_MB", "RESULTS_KEY", "analyse_clip", "analyse_clips"]

DETAILS_PAGE = "pages/how_it_works.py"
ROUTING_WORDS = {"hard": "Model of the detected gender", "soft": "Both models, weighed by gender"}
PAGE_CSS = """
<style>
/* wide tables scroll sideways on a phone instead of squeezing or dropping columns */
[data-testid="stTable"] { overflow-x: auto; }
[data-testid="stTable"] table { min-width: 560px; }
[data-testid="stTable"] th { white-space: nowrap; }
.ser-phone-only { display: none; }
@media (max-width: 640px) { .ser-phone-only { display: block; } }
</style>
"""
SWIPE_HINT = '<div class="ser-phone-only"><small>Swipe the table sideways to see every column.</small></div>'


# -- models ---------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def model_loader() -> ModelLoader:
    """One loader per server process: cascades by options, the default one warmed up in the background."""
    example = EXAMPLES_DIR / EXAMPLES[0][0]
    return ModelLoader(warm=lambda cascade: warm_up(cascade, example.read_bytes() if example.is_file() else None))


def app_settings() -> AppSettings:
    try:
        secrets = dict(st.secrets)
    except Exception:  # no secrets.toml: the environment alone decides
        secrets = {}
    return read_settings(secrets=secrets)


# -- options: on the page (a phone hides the sidebar) ---------------------------------------------
VOICES_LABELS = {"auto": "One speaker or recorded apart", "room": "Several people in one room"}  # VOICE_MODES' keys


def options_box(settings: AppSettings) -> tuple[CascadeOptions, str, str]:
    """Option widgets in an expander; returns ``(what to load, the options in words, how voices are found)``."""
    with st.expander("Options: which models answer, how voices are found", icon=":material/tune:"):
        gender_model = settings.gender_model
        choices = settings.model_options()
        if choices:
            choice = st.selectbox("Gender model", choices, key="gender_choice",
                                  help="Which model tells the voice's gender; only the models the operator allows.")
            gender_model = settings.resolve(choice)
        routing = st.radio("Which emotion model answers", ["hard", "soft"], key="routing",
                           format_func=ROUTING_WORDS.get, horizontal=True,
                           help="One model was trained on men's voices, one on women's. 'Both' helps when "
                                "the gender is unclear.")
        voices = st.radio("Long recordings: who is speaking", list(VOICES_LABELS), key="voices",
                          format_func=VOICES_LABELS.get, horizontal=True,
                          help="For recordings of several people sharing one room and microphone (a meeting, an "
                               "interview), the second choice finds more of the voices; it also splits more "
                               "single-speaker recordings into two voices.")
    words = [gender_model or SHIPPED_LABEL, ROUTING_WORDS[routing].lower(), f"voices: {VOICES_LABELS[voices].lower()}"]
    return CascadeOptions(gender_model, routing, settings.male_dir, settings.female_dir), ", ".join(words), voices


# -- inputs ---------------------------------------------------------------------------------------
def _add_example(file: str) -> None:
    app_state.add_example(st.session_state, file, (EXAMPLES_DIR / file).read_bytes())


def _clear() -> None:
    app_state.clear(st.session_state)


def collect_inputs() -> list[Clip]:
    """Every recording on the page (uploads, the microphone, examples), kept in the session across pages."""
    generation = st.session_state.get(INPUTS_KEY, 0)
    suffix = f"_{generation}" if generation else ""
    upload_key, record_key = f"uploads{suffix}", f"recording{suffix}"
    fresh = {key: key not in st.session_state for key in (upload_key, record_key)}
    uploads = st.file_uploader(
        f"Speech recordings: {FORMATS_TEXT}; up to {MAX_UPLOAD_MB} MB each (an hour of WAV)",
        accept_multiple_files=True, key=upload_key, max_upload_size=MAX_UPLOAD_MB,
    ) or []  # no type= filter: a file the app cannot read is named on the page with the reason
    app_state.sync_widget(st.session_state, upload_key, uploads, source="upload", fresh=fresh[upload_key])
    recording = st.audio_input("Or record from the microphone: speak for 3-10 seconds",
                               key=record_key)
    app_state.sync_widget(st.session_state, record_key, [recording] if recording is not None else [],
                          source="microphone", fresh=fresh[record_key], name="recording.wav")
    st.markdown("**No recording at hand? Try an example** (actors from RAVDESS; one click analyses it):")
    columns = st.columns(len(EXAMPLES))
    for column, (file, label) in zip(columns, EXAMPLES):
        column.button(label, key=f"example_{file}", on_click=_add_example, args=(file,), width="stretch")
    return app_state.page_clips(st.session_state)


# -- results --------------------------------------------------------------------------------------
def measured_words(what: str, j: Judgement, *, gender_right_assumed: bool = False) -> str:
    """What the tests measured for answers about this sure (a sentence; ``""`` when unknown)."""
    if j.measured is None:
        return ""
    text = (f"In tests on recordings like the training data, {what} answers this sure were right "
            f"{percent(j.measured)} of the time ({j.clips:,} clips)")
    if gender_right_assumed:
        text += ", and that assumes the gender, which picks the emotion model, was right"
    return text + "."


def above_level_words(what: str) -> str:
    """How often answers above the uncertain level were right, for comparison (a sentence)."""
    bins, level = ((GENDER_BINS, GENDER_UNCERTAIN_BELOW) if what == "gender"
                   else (EMOTION_BINS, EMOTION_UNCERTAIN_BELOW))
    rows = [(n, share) for lo, hi, n, share in bins if lo >= level and n]
    right = sum(n * share for n, share in rows) / sum(n for n, _ in rows)
    return f"Above {level:.0%}: right {percent(right)} of the time."


def show_answer(column, title: str, what: str, j: Judgement, *, gender: Judgement | None = None) -> None:
    """A sure answer in large type with its probability; an uncertain one in a box that says why.

    ``gender``: for the emotion, the gender judgement it depends on (the gender picks the model).
    """
    gender_doubt = gender is not None and gender.uncertain
    measured = measured_words(what, j, gender_right_assumed=gender is not None)
    if not j.uncertain:
        column.metric(title, j.label.capitalize(), f"{percent(j.probability)} probability",
                      delta_color="off", delta_arrow="off", help=measured)
        column.caption(measured)
        return
    with column.container(border=True):
        st.markdown(f"{title}  \n:orange-badge[:material/help: Uncertain] :orange[leans **{j.label}**, "
                    f"{percent(j.probability)}]")
        if gender_doubt and j.probability >= 0.5:
            # sure by its own probability, uncertain only because the model that answered may be the wrong one
            st.caption(f"Uncertain because the gender is uncertain: the gender picks which emotion model answers, "
                       f"and the {percent(j.probability)} is the {gender.label}-voice model's own probability. If the "
                       "voice is not "
                       f"{gender.label}, the other model may hear another emotion; the test figures do not apply.")
        else:
            st.caption(f"Uncertain because {j.reason}. {measured} {above_level_words(what)}")


def _play_index(index: int) -> int | None:
    """The segment whose start the player of clip ``index`` plays from (the last one clicked), if any."""
    value = st.session_state.get(f"play_{index}")
    return value if isinstance(value, int) else None


def _widget_key(kind: str, index: int) -> str:
    """Key of clip ``index``'s segment table (``kind="segments_table"``) or timeline (``"timeline"``).

    Each click in one of them starts the other afresh (a new key), so that clicking the same bar or
    row again after a click in the other one still counts as a new choice.
    """
    return f"{kind}_{index}_{st.session_state.get(f'{kind}_generation_{index}', 0)}"


def _renew(kind: str, index: int) -> None:
    name = f"{kind}_generation_{index}"
    st.session_state[name] = st.session_state.get(name, 0) + 1


def _picked_in_table(index: int) -> None:
    """Callback of the segment table: a clicked row or cell chooses the segment to play."""
    try:
        selection = st.session_state[_widget_key("segments_table", index)]["selection"]
        rows = list(selection.get("rows") or []) + [cell[0] for cell in selection.get("cells") or []]
    except (KeyError, TypeError, AttributeError):
        return
    if rows:
        st.session_state[f"play_{index}"] = int(rows[0])
        _renew("timeline", index)


def _picked_in_chart(index: int) -> None:
    """Callback of the timeline: a clicked bar chooses the segment to play."""
    try:
        picked = st.session_state[_widget_key("timeline", index)]["selection"][TIMELINE_PICK]
    except (KeyError, TypeError, AttributeError):
        return
    if picked:
        st.session_state[f"play_{index}"] = int(picked[0]["segment"])
        _renew("segments_table", index)


def _selected_start(result: ClipResult, index: int) -> float | None:
    """Start (s) of the segment last clicked in clip ``index``'s timeline or segment table, if any."""
    k = _play_index(index)
    try:
        return float(result.recording.segments[k].start_s) if k is not None else None
    except (IndexError, AttributeError):
        return None


def render_voices(result: ClipResult, data: bytes, index: int) -> None:
    """Who speaks when: a row per voice, the timeline by voice, a player, the segment table and its CSV."""
    rec = result.recording
    st.markdown("#### Who speaks when")
    if rec is None or not rec.ok:
        what, advice = recording_words(rec) if rec is not None else ("Voices not analysed", "")
        st.warning(f"Voices: {what.lower()}. {advice}" + (f"  \nDetails: {rec.error}." if rec and rec.error else ""),
                   icon=":material/groups:")
        return
    st.markdown(f"The recording lasts {result.prediction.duration_s:.0f} s; **{rec.speech_s:.0f} s of it is speech**, "
                f"from **{voices_words(result)}**. Each voice's gender is decided over all its speech; each "
                "segment's emotion by the emotion model of that voice's gender. One speaker may show as two "
                "voices, or two similar voices as one.")
    st.html(SWIPE_HINT)
    st.table(voices_frame(rec).set_index("voice"))
    st.caption("Emotions: how much of the voice's speaking time each emotion was heard in (a share of time, "
               "not a probability). Turns: how often the voice took the floor.")
    st.altair_chart(voice_timeline_chart(rec), width="stretch", key=_widget_key("timeline", index),
                    on_select=partial(_picked_in_chart, index), selection_mode=TIMELINE_PICK)
    start = _selected_start(result, index)
    with st.container(border=True, key=f"player_box_{index}"):
        if start is None:
            st.caption("Click a bar above or a row below to play the recording from that segment.")
        else:
            segment = rec.segments[_play_index(index)]
            st.caption(f"Playing from {start:.1f} s (voice {segment.voice}, "
                       f"{segment.prediction.emotion or 'not judged'}).")
        if data:
            st.audio(data, format=_mime(result.name), start_time=start or 0, autoplay=start is not None)
    st.dataframe(segments_frame(rec), hide_index=True, key=_widget_key("segments_table", index),
                 on_select=partial(_picked_in_table, index), selection_mode=["single-row", "single-cell"], width="stretch")
    st.caption("Probability: the emotion model's own probability for the segment (uncertain ones marked).")
    st.download_button("Download the segments (CSV)", segment_csv(rec, result.name),
                       file_name=f"{result.name.rsplit('.', 1)[0]}_segments.csv", mime="text/csv",
                       key=f"segments_csv_{index}")


def render_clip(result: ClipResult, data: bytes, index: int) -> None:
    p = result.prediction
    if data and not result.long:
        st.audio(data, format=_mime(result.name))
    for note in result.notes:
        st.info(note)
    if result.long:
        render_voices(result, data, index)
        if result.recording is None or not result.recording.ok:
            return
    g, e = result.gender, result.emotion
    if result.several_voices:
        st.info("No single gender or emotion for the whole recording: it holds several voices, and one answer "
                "would mix them. Each voice's answer is in the table above.", icon=":material/groups:")
    else:
        if result.long:
            st.markdown("#### The one voice, over all its speech")
        c1, c2, c3 = st.columns(3)
        show_answer(c1, "Gender", "gender", g)
        show_answer(c2, "Emotion", "emotion", e, gender=g)
        model = {"blended": "both emotion models", "by voice": "the emotion model of the voice's gender"}.get(
            p.emotion_model, f"the {p.emotion_model}-voice emotion model")
        c3.metric("Speech found", f"{p.speech_duration_s:.1f} s", f"answered by {model}",
                  delta_color="off", delta_arrow="off")
        if p.speech_duration_s < 1.5:
            c3.caption("Very short clips are harder to judge: 3-10 seconds of speech works best.")
    tabs = ["Waveform", "Spectrogram"] if result.several_voices else ["Emotions", "Waveform", "Spectrogram"]
    views = dict(zip(tabs, st.tabs(tabs)))
    if "Emotions" in views:
        with views["Emotions"]:
            st.altair_chart(bar_chart(p.emotion_probabilities), width="stretch")
            st.caption("Dashed line: below it an emotion answer counts as uncertain.")
    with views["Waveform"]:
        if result.waveform is not None:
            st.altair_chart(waveform_chart(result.waveform), width="stretch")
    with views["Spectrogram"]:
        if result.spectrogram is not None:
            st.image(result.spectrogram, width="stretch",
                     caption="Spectrogram: time across, pitch/frequency up; brighter = louder")


def render_refused(result: ClipResult, recorded: bool) -> None:
    p = result.prediction
    what, advice = plain_status(p, recorded=recorded)
    detail = p.error if p.error and p.status not in PLAIN_ENOUGH else ""  # "silent": the words say it all
    text = f"**{result.name}** was not analysed: {what.lower()}. {advice}" + (f"  \nDetails: {detail}." if detail else "")
    (st.warning if p.status in SOFT_STATUSES else st.error)(text)


def _mime(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower()
    return {"mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg", "oga": "audio/ogg", "opus": "audio/ogg",
            "m4a": "audio/mp4", "mp4": "audio/mp4", "aac": "audio/aac", "webm": "audio/webm", "weba": "audio/webm",
            "mka": "audio/x-matroska", "amr": "audio/amr", "wma": "audio/x-ms-wma"}.get(ext, "audio/wav")


def run_analysis(options: CascadeOptions, label: str, todo: list[tuple[tuple, Clip]], voices: str = "auto") -> list[str]:
    """Analyse ``todo`` = ``[(clip id, clip)]`` with a progress bar over the clips and their steps.

    Returns the error messages to show (the page is redrawn afterwards, so they are kept in the session).
    """
    store = st.session_state[RESULTS_KEY]
    loader = model_loader()
    bar = st.progress(0.0, text="Loading the models..." if loader.ready(options)
                      else "Loading the models (after a restart this takes up to a minute)...")
    try:
        cascade = loader.get(options)
    except Exception as exc:
        bar.empty()
        return [f"Could not load the models (gender model: {options.gender_model or SHIPPED_LABEL}): {exc}"]
    messages = []
    try:
        for k, (key, clip) in enumerate(todo):
            def progress(fraction: float, text: str, k=k) -> None:
                bar.progress(min(1.0, (k + fraction) / len(todo)),
                             text=f"Recording {k + 1} of {len(todo)}: {text}")
            result = analyse_clip(cascade, clip.name, clip.data, progress, voices=voices)
            result.settings = label
            store[key] = result
    except Exception as exc:  # never a traceback on the page
        messages.append(f"Analysis failed: {type(exc).__name__}: {exc}")
    bar.empty()
    return messages


INTRO = (
    "Upload recordings, record one, or try an example: the app tells each voice's **gender** and the "
    "**emotion** heard (one of eight), and how sure the models are. A recording of "
    f"{TIMELINE_MIN_S:.0f} s or more is split into voices: who speaks when, each voice's gender and each "
    "turn's emotion. Audio stays in memory and is not stored. Trained on acted and read speech (English, "
    "Amharic, Italian, Polish): research and non-commercial use only."
)


def analyse_page() -> None:
    st.html(PAGE_CSS)
    st.title("Speech emotion recognition")
    st.markdown(INTRO)
    st.page_link(DETAILS_PAGE, label="How it works: what the models can and cannot do", icon=":material/info:")
    settings = app_settings()
    options, label, voices = options_box(settings)
    model_loader().start(options)  # the models load while the visitor picks a file
    clips = collect_inputs()
    store: dict[tuple, ClipResult] = st.session_state.setdefault(RESULTS_KEY, {})
    ids = [clip_id(c.name, c.data) for c in clips]
    for gone in [k for k in store if k not in ids]:
        del store[gone]  # clips no longer on the page: free their results
    pending = [i for i, k in enumerate(ids) if k not in store]
    stale = [i for i, k in enumerate(ids) if k in store and store[k].settings != label]
    if clips:
        names = ", ".join(c.name for c in clips)
        st.caption(f"On the page: {len(clips)} recording(s): {names}. They stay while you visit "
                   "\"How it works\"; **Clear** removes them.")

    b1, b2, _ = st.columns([1, 1, 2])
    todo = bool(pending or stale)
    pressed = b1.button("Analyse", type="primary" if todo else "secondary", key="analyse", disabled=not todo,
                        width="stretch")
    b2.button("Clear", key="clear", on_click=_clear, disabled=not clips, width="stretch",
              help="Remove every recording and result from the page.")
    notice = st.empty()
    if stale and not pressed:
        with notice.container():
            st.info(f"You changed an option: the results below were made with other options "
                    f"({store[ids[stale[0]]].settings}).")
            pressed = st.button("Re-analyse with the new options", key="reanalyse")
    auto = st.session_state.pop(AUTO_KEY, False)
    if (pressed or auto) and todo:
        notice.empty()
        st.session_state[MESSAGES_KEY] = run_analysis(options, label,
                                                      [(ids[i], clips[i]) for i in sorted(pending + stale)], voices)
        st.rerun()  # redraw: Analyse is disabled now that nothing waits
    for message in st.session_state.get(MESSAGES_KEY, []):
        st.error(message)
    if not clips:
        st.info("Add a recording above (or record one, or try an example), then press **Analyse**.")
        return
    if pending:
        st.caption(f"{len(pending)} recording(s) waiting: press **Analyse**.")
    done = [(i, store[k]) for i, k in enumerate(ids) if k in store]
    if done:
        show_results(done, clips)


def show_results(done: list[tuple[int, ClipResult]], clips: list[Clip]) -> None:
    results = [r for _, r in done]
    n_ok = sum(r.prediction.ok for r in results)
    failed = len(results) - n_ok
    summary = f"{len(results)} recording(s): {n_ok} analysed" + (f", {failed} not analysed (see why below)"
                                                                   if failed else "")
    st.markdown(f"### Results\n{summary}.")
    if n_ok:
        st.markdown(reliability_note())
    for i, result in done:
        if not result.prediction.ok:
            render_refused(result, recorded=clips[i].source == "microphone")
    if len(results) > 1 or any(r.several_voices for r in results):
        st.html(SWIPE_HINT)
        st.table(summary_frame(results).set_index("file"))
        st.caption("Model's probability: how sure the model itself is; how often such answers were right is under "
                   "each result and in \"How it works\".")
    c1, c2 = st.columns(2)
    c1.download_button("Download all results (CSV)", csv_bytes(results_rows(results), RESULTS_COLUMNS),
                       file_name="emotion_results.csv", mime="text/csv", key="download_csv", width="stretch",
                       help="A row per file, then a row per voice of a recording split into voices; "
                            "an 'uncertain' column says which answers to doubt, and why.")
    voices = voices_rows(results)
    if voices:
        c2.download_button("Download the voices (CSV)", csv_bytes(voices, VOICE_CSV_COLUMNS),
                           file_name="emotion_voices.csv", mime="text/csv", key="download_voices",
                           width="stretch", help="A row per voice: gender, speech, turns, each emotion's share "
                                                 "of its speaking time.")
    analysed = [(i, r) for i, r in done if r.prediction.ok]
    for i, result in analysed:
        try:
            if len(analysed) == 1 and len(results) == 1:
                with st.container(border=True):
                    st.subheader(result.name)
                    render_clip(result, clips[i].data, i)
            else:
                g, e = result.gender, result.emotion
                if result.long:
                    title = f"{result.name}: {voices_words(result)}"
                else:
                    flag = " · uncertain" if (g.uncertain or e.uncertain) else ""
                    title = f"{result.name}: {g.label}, {e.label}{flag}"
                with st.expander(title, expanded=len(analysed) == 1):
                    render_clip(result, clips[i].data, i)
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
