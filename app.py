"""Streamlit web app: upload or record speech, see gender and emotion.

    streamlit run app.py        # or: make app  -> http://localhost:8501

A thin front over :mod:`pipeline`: the models, audio preparation and CSV rows all
come from there (``Cascade``, ``prediction_row``, ``predict_timeline``), so the
app, ``script.py`` and the Python API give the same answers. This file only
reads uploads from memory, caches results per session and draws them.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import streamlit as st

from pipeline.batch import CSV_COLUMNS, prediction_row
from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR, Cascade, Prediction
from pipeline.paths import PROJECT_ROOT
from pipeline.emotion import EMOTION_LABELS
from pipeline.gender import PUBLIC_HUB_ID

MAX_UPLOAD_MB = 50  # keep in step with .streamlit/config.toml [server] maxUploadSize
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
TIMELINE_MIN_S = 60.0  # clips at least this long also get a timeline
UPLOAD_TYPES = ["wav", "flac", "ogg", "opus", "mp3"]
MODEL_CARDS = {
    "Gender model": PROJECT_ROOT / "gender_model" / "README.md",
    "Male emotion model": PROJECT_ROOT / "male_models" / "README.md",
    "Female emotion model": PROJECT_ROOT / "female_models" / "README.md",
}
SHIPPED, HUB = "Shipped (offline)", "Public hub / local folder"
RESULTS_KEY = "ser_results"  # st.session_state[RESULTS_KEY]: {clip_key(...): ClipResult}


# -- models ---------------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the models (once per server process)...")
def load_cascade(gender_model: str | None, routing: str, male_dir: str, female_dir: str,
                 denoise: bool = False) -> Cascade:
    """The cascade for a gender-model choice (``None`` = shipped), routing and noise reduction, loaded once per process."""
    return Cascade.load(gender_model, male_dir=male_dir, female_dir=female_dir, routing=routing, denoise=denoise)


def emotion_model_dirs() -> tuple[str, str]:
    """Emotion model folders: the shipped ones unless ``SER_MALE_MODEL_DIR`` / ``SER_FEMALE_MODEL_DIR`` are set."""
    return (os.environ.get("SER_MALE_MODEL_DIR") or str(MALE_MODEL_DIR),
            os.environ.get("SER_FEMALE_MODEL_DIR") or str(FEMALE_MODEL_DIR))


# -- analysis (no Streamlit calls: testable on its own) ------------------------------------------
@dataclass
class ClipResult:
    """Everything shown for one clip, computed once and kept in the session."""

    name: str
    size: int
    prediction: Prediction
    row: dict[str, str]
    waveform: pd.DataFrame | None = None
    spectrogram: np.ndarray | None = None  # uint8 RGB image [n_mels * 2, frames, 3]
    timeline: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def clip_key(name: str, data: bytes, model_id: str) -> tuple[str, str, int, str]:
    """Cache key of a clip under a model choice: ``(model id, name, size, content hash)``."""
    return (model_id, name, len(data), hashlib.sha256(data).hexdigest())


def too_large(name: str, size: int) -> Prediction:
    return Prediction(
        status="too_large", file=name,
        error=f"file is {size / 1024 / 1024:.1f} MB; the limit is {MAX_UPLOAD_MB} MB. "
              "Cut or compress the recording (e.g. FLAC or Opus) and try again",
    )


def analyse_clips(cascade: Cascade, clips: Sequence[tuple[str, bytes]],
                  progress=None) -> list[ClipResult]:
    """Score ``(name, bytes)`` clips with the cascade (one batch) and add what the page draws.

    Never raises for bad input: each clip gets a :class:`ClipResult` whose
    prediction carries ``status`` and ``error``.
    """
    results: list[ClipResult | None] = [None] * len(clips)
    todo = []
    for i, (name, data) in enumerate(clips):
        if len(data) > MAX_UPLOAD_BYTES:
            p = too_large(name, len(data))
            results[i] = ClipResult(name, len(data), p, prediction_row(p, name=name))
        else:
            todo.append(i)
    predictions = cascade.predict_files([clips[i][1] for i in todo], names=[clips[i][0] for i in todo])
    for n, (i, p) in enumerate(zip(todo, predictions)):
        name, data = clips[i]
        result = ClipResult(name, len(data), p, prediction_row(p, name=name))
        if p.ok:
            try:
                _add_views(cascade, result, data)
            except Exception as exc:  # the prediction stands even if a picture fails
                result.notes.append(f"Could not draw the waveform/timeline: {type(exc).__name__}: {exc}")
        results[i] = result
        if progress is not None:
            progress(n + 1, len(todo))
    return [r for r in results if r is not None]


def _add_views(cascade: Cascade, result: ClipResult, data: bytes) -> None:
    from pipeline.audio import decode_audio, resample, to_mono_float
    from pipeline.timeline import predict_timeline

    decoded = decode_audio(data, name=result.name)
    mono, _ = to_mono_float(decoded.samples)
    rate = cascade.audio_config.sample_rate
    mono16 = resample(mono, decoded.sample_rate, rate)
    result.waveform = waveform_frame(mono16, rate)
    result.spectrogram = spectrogram_image(mono16, rate)
    if mono.size / decoded.sample_rate >= TIMELINE_MIN_S:
        result.timeline = predict_timeline(cascade, decoded.samples, decoded.sample_rate).to_frame()


def waveform_frame(y: np.ndarray, sr: int, points: int = 1500) -> pd.DataFrame:
    """Min/max envelope of ``y [shape=(n,)]`` in about ``points`` columns (time in s)."""
    n = y.size
    step = max(1, int(np.ceil(n / points)))
    usable = (n // step) * step
    blocks = y[:usable].reshape(-1, step) if usable else y.reshape(1, -1)
    return pd.DataFrame({
        "time_s": np.arange(blocks.shape[0]) * step / sr,
        "min": blocks.min(axis=1), "max": blocks.max(axis=1),
    })


_VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def spectrogram_image(y: np.ndarray, sr: int, *, n_mels: int = 96, max_frames: int = 1000) -> np.ndarray:
    """Log-mel spectrogram of ``y [shape=(n,)]`` as a uint8 RGB image (low frequencies at the bottom)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=160, n_mels=n_mels, fmax=sr / 2)
    db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)  # [n_mels, frames], -80..0 dB
    if db.shape[1] > max_frames:  # average neighbouring frames of long clips
        step = int(np.ceil(db.shape[1] / max_frames))
        usable = (db.shape[1] // step) * step
        db = db[:, :usable].reshape(n_mels, -1, step).mean(axis=2)
    level = np.clip((db + 80.0) / 80.0, 0.0, 1.0)[::-1]  # 0..1, high mels on top
    pos = level * (len(_VIRIDIS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac
    return np.repeat(rgb.astype(np.uint8), 2, axis=0)


# -- page -----------------------------------------------------------------------------------------
def sidebar() -> tuple[str | None, str, bool, str]:
    """Model choice widgets; returns ``(gender_model or None, routing, denoise, model id)``."""
    with st.sidebar:
        st.header("Models")
        choice = st.radio("Gender model", [SHIPPED, HUB], key="gender_choice",
                          help="The shipped model runs offline. A hub id needs internet the first time; "
                               "a local folder must hold config.json and model.safetensors "
                               "(or ensemble.json, for a seed ensemble).")
        gender_model = None
        if choice == HUB:
            gender_model = st.text_input("Hub id or local folder", value=PUBLIC_HUB_ID, key="gender_hub_id").strip()
            gender_model = gender_model or None
        routing = st.radio(
            "Emotion routing", ["hard", "soft"], key="routing", horizontal=True,
            help="hard: the emotion model of the predicted gender answers. soft: both answer, weighted by "
                 "the gender probabilities (useful for uncertain voices).",
        )
        denoise = st.toggle(
            "Noise reduction", value=False, key="denoise",
            help="Spectral gating (noisereduce) before analysis. Off by default: it lowers emotion accuracy on "
                 "clean speech and in most noisy conditions measured (notebooks/5_noise_reduction.ipynb).",
        )
        with st.expander("About the models", expanded=False):
            for title, path in MODEL_CARDS.items():
                st.markdown(f"#### {title}")
                try:
                    st.markdown(path.read_text(encoding="utf-8"))
                except OSError:
                    st.info(f"No model card at {path.relative_to(PROJECT_ROOT)} yet.")
    male_dir, female_dir = emotion_model_dirs()
    return gender_model, routing, denoise, f"{gender_model or 'shipped'}:{routing}:{denoise}:{male_dir}:{female_dir}"


def collect_inputs() -> list[tuple[str, bytes]]:
    """Current uploads and recording as ``(name, bytes)``, read from memory."""
    uploads = st.file_uploader(
        f"Speech recordings (WAV, FLAC, OGG/Opus, MP3; up to {MAX_UPLOAD_MB} MB each)",
        type=UPLOAD_TYPES, accept_multiple_files=True, key="uploads", max_upload_size=MAX_UPLOAD_MB,
    ) or []
    recording = st.audio_input("...or record from the microphone", key="recording")
    clips: list[tuple[str, bytes]] = []
    names: set[str] = set()
    for item in [*uploads, *([recording] if recording is not None else [])]:
        name = item.name if item is not recording else "recording.wav"
        base, n = name, 1
        while name in names:  # two uploads with the same name stay apart in the table
            n += 1
            name = f"{base} ({n})"
        names.add(name)
        clips.append((name, item.getvalue()))  # over-limit files are refused by analyse_clips
    return clips


def render_clip(result: ClipResult, data: bytes, index: int) -> None:
    p = result.prediction
    st.subheader(result.name)
    if data:
        st.audio(data, format=_mime(result.name))
    for note in result.notes:
        st.info(note)
    if not p.ok:
        message = f"**{result.name}** could not be analysed (status `{p.status}`): {p.error}"
        if p.status in ("silent", "too_short", "empty", "too_large"):
            st.warning(message)
        else:
            st.error(message)
        return
    g1, g2, g3 = st.columns(3)
    g1.metric("Gender", p.gender.capitalize(), f"{p.gender_confidence:.0%} probability",
              delta_color="off", delta_arrow="off")
    g2.metric("Emotion", p.emotion.capitalize(), f"{p.emotion_confidence:.0%} probability",
              delta_color="off", delta_arrow="off")
    g3.metric("Emotion model", p.emotion_model, f"{p.speech_duration_s:.1f} s of speech",
              delta_color="off", delta_arrow="off",
              help="male/female: the model of the predicted gender answered (hard routing); "
                   "blended: both, weighted by the gender probabilities (soft routing).")
    probs = pd.DataFrame({"emotion": list(p.emotion_probabilities), "probability": list(p.emotion_probabilities.values())})
    st.altair_chart(_bar_chart(probs), width="stretch")
    tab_wave, tab_spec = st.tabs(["Waveform", "Spectrogram"])
    with tab_wave:
        if result.waveform is not None:
            st.altair_chart(_waveform_chart(result.waveform), width="stretch")
    with tab_spec:
        if result.spectrogram is not None:
            st.image(result.spectrogram, caption="Log-mel spectrogram (16 kHz, 80 dB range; low pitch at the bottom)",
                     width="stretch")
    if result.timeline is not None:
        st.markdown("**Timeline** (4 s windows every 2 s)")
        st.altair_chart(_timeline_chart(result.timeline), width="stretch")
        st.dataframe(result.timeline, hide_index=True, key=f"timeline_table_{index}")


def _mime(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower()
    return {"mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg", "opus": "audio/ogg"}.get(ext, "audio/wav")


def _bar_chart(probs: pd.DataFrame):
    import altair as alt

    base = alt.Chart(probs, title="Emotion probabilities").encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        y=alt.Y("emotion:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
        tooltip=["emotion", alt.Tooltip("probability:Q", format=".1%")],
    )
    labels = base.mark_text(align="left", dx=4).encode(text=alt.Text("probability:Q", format=".0%"))
    return (base.mark_bar() + labels).properties(height=alt.Step(26))


def _waveform_chart(wave: pd.DataFrame):
    import altair as alt

    return alt.Chart(wave).mark_area(opacity=0.8).encode(
        x=alt.X("time_s:Q", title="time (s)"), y=alt.Y("min:Q", title="amplitude"), y2="max:Q",
    ).properties(height=160)


def _timeline_chart(frame: pd.DataFrame):
    import altair as alt

    ok = frame[frame["status"] == "ok"].copy()
    ok["time_s"] = (ok["start_s"] + ok["end_s"]) / 2
    long = ok.melt(id_vars=["time_s", "gender"], value_vars=[f"prob_{e}" for e in EMOTION_LABELS],
                   var_name="emotion", value_name="probability")
    long["emotion"] = long["emotion"].str.removeprefix("prob_")
    lines = alt.Chart(long, title="Emotion probability over time (window centres)").mark_line(point=True).encode(
        x=alt.X("time_s:Q", title="time (s)"), y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1])),
        color="emotion:N", tooltip=["time_s", "emotion", alt.Tooltip("probability:Q", format=".1%")],
    ).properties(height=220)
    gender = alt.Chart(ok, title="Gender per window").mark_tick(thickness=6, size=20).encode(
        x=alt.X("time_s:Q", title="time (s)"), y=alt.Y("gender:N", title=None), color="gender:N",
        tooltip=["time_s", "gender", alt.Tooltip("gender_confidence:Q", format=".1%")],
    ).properties(height=80)
    return alt.vconcat(lines, gender)


def main() -> None:
    st.set_page_config(page_title="Speech emotion recognition", layout="wide")
    st.title("Speech emotion recognition")
    st.markdown(
        "Upload speech recordings or record one: the app tells the speaker's **gender** and **emotion** "
        "(neutral, calm, happy, sad, angry, fearful, disgust, surprised), routing each clip to a male- or "
        f"female-specific emotion model. Files up to **{MAX_UPLOAD_MB} MB** each; recordings of a minute or "
        "more also get a timeline. Audio stays in memory and is not stored. Trained on acted and read speech "
        "in English, Amharic and Italian (RAVDESS, SAVEE, ASED, EMOVO): research and non-commercial use only."
    )
    gender_model, routing, denoise, model_id = sidebar()
    clips = collect_inputs()
    store: dict[tuple, ClipResult] = st.session_state.setdefault(RESULTS_KEY, {})
    keys = [clip_key(name, data, model_id) for name, data in clips]
    current = {k[1:] for k in keys}
    for stale in [k for k in store if k[1:] not in current]:
        del store[stale]  # clips no longer on the page: free their results
    pending = [i for i, k in enumerate(keys) if k not in store]

    if st.button("Analyse", type="primary", key="analyse", disabled=not clips):
        if pending:
            try:
                cascade = load_cascade(gender_model, routing, *emotion_model_dirs(), denoise=denoise)
            except Exception as exc:
                st.error(f"Could not load the models (gender model: {gender_model or 'shipped'}): {exc}")
                st.stop()
            bar = st.progress(0.0, text="Analysing...")
            try:
                results = analyse_clips(
                    cascade, [clips[i] for i in pending],
                    progress=lambda done, total: bar.progress(done / total, text=f"Analysed {done} of {total}"),
                )
                for i, result in zip(pending, results):
                    store[keys[i]] = result
            except Exception as exc:  # never a traceback on the page
                st.error(f"Analysis failed: {type(exc).__name__}: {exc}")
            bar.empty()
        pending = [i for i, k in enumerate(keys) if k not in store]
    if not clips:
        st.info("Add one or more recordings above, then press **Analyse**.")
        return
    if pending:
        st.caption(f"{len(pending)} clip(s) not analysed yet with these model settings: press **Analyse**.")

    done = [(i, store[k]) for i, k in enumerate(keys) if k in store]
    if done:
        rows = [r.row for _, r in done]
        table = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
        n_ok = int((table["status"] == "ok").sum())
        st.markdown(f"### Results: {n_ok} of {len(rows)} clip(s) analysed")
        if len(rows) > 1:
            st.dataframe(table, hide_index=True, key="results_table")
        st.download_button("Download results (CSV)", table.to_csv(index=False).encode("utf-8"),
                           file_name="emotion_results.csv", mime="text/csv", key="download_csv")
    for i, result in done:
        with st.container(border=True):
            try:
                render_clip(result, clips[i][1], i)
            except Exception as exc:  # one broken view never hides the others
                st.error(f"Could not display the result for {clips[i][0]}: {type(exc).__name__}: {exc}")


if __name__ == "__main__":  # streamlit run / AppTest; importing app only defines the helpers
    main()
