"""The "How it works" page: what the app does, how reliable it is (measured), limits, model cards, credits."""
from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from pipeline.app_views import EXAMPLES_DIR, FORMATS_TEXT, MAX_UPLOAD_MB, TIMELINE_MIN_S
from pipeline.confidence import (
    EMOTION_BINS,
    EMOTION_UNCERTAIN_BELOW,
    GENDER_BINS,
    GENDER_UNCERTAIN_BELOW,
    RELIABILITY,
    reliability_note,
)
from pipeline.paths import PROJECT_ROOT

MODEL_CARDS = {
    "Gender model": PROJECT_ROOT / "gender_model" / "README.md",
    "Men's-voice emotion model": PROJECT_ROOT / "male_models" / "README.md",
    "Women's-voice emotion model": PROJECT_ROOT / "female_models" / "README.md",
}


def demote_headings(card: str) -> str:
    """Markdown headings two levels down (the cards sit under a tab), leaving code blocks alone."""
    lines, in_code = [], False
    for line in card.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,4} ", line):
            line = "##" + line
        lines.append(line)
    return "\n".join(lines)


def bins_table(bins, what: str) -> pd.DataFrame:
    return pd.DataFrame([{f"{what} probability": f"{lo:.0%}-{hi:.0%}", "test clips": n, "right": f"{share:.1%}"}
                         for lo, hi, n, share in bins if n])


st.title("How it works")
st.markdown(
    "1. **Preparation.** The recording is mixed to one channel, resampled to 16 kHz, silence at both ends is "
    "cut and the level is evened out.\n"
    "2. **Gender.** Two voice models give their opinion on whether the voice sounds male or female: one trained "
    "for exactly this (an ECAPA-TDNN), and a speaker-recognition model (GE2E) whose description of the voice a "
    "small classifier reads, trained also on copies of the clips made noisy, phone-like or badly compressed. "
    "The answer weighs the two equally; the second keeps the answer when the recording is noisy or of poor "
    "quality.\n"
    "3. **Emotion.** The recording goes to an emotion model trained on voices of that gender only. It reads "
    "two descriptions of the clip: acoustic measurements (pitch, loudness, the spectrum and how they move) and "
    "what the audio encoder of a speech recogniser trained on a very large amount of speech (OpenAI's Whisper) "
    "hears in it. It gives a probability for each of eight emotions: neutral, calm, happy, sad, angry, fearful, "
    "disgust, surprised.\n"
    f"4. **Long recordings** ({TIMELINE_MIN_S:.0f} s or more) are cut into speech segments, the segments are "
    "grouped by voice, each voice gets one gender from all its speech, and each segment its own emotion: "
    "the timeline."
)
def _below(bins, level: float) -> float:
    """Share right over the reliability bins below ``level`` (clip-weighted)."""
    rows = [(n, share) for lo, hi, n, share in bins if hi <= level and n]
    return sum(n * share for n, share in rows) / sum(n for n, _ in rows)


st.header("How reliable is it?")
st.markdown(reliability_note())
r = RELIABILITY
figures = pd.DataFrame([
    {"question": "gender", "new speakers, recorded like the training data": f"{r['gender_new_speakers']:.1%}",
     "whole corpora left out of training": "{:.0%}-{:.0%}".format(*r["gender_unseen_range"])},
    {"question": "emotion (8 classes; guessing: 12.5%)",
     "new speakers, recorded like the training data": f"{r['emotion_new_speakers']:.1%} "
                                                      f"(RAVDESS only: {r['emotion_ravdess']:.1%})",
     "whole corpora left out of training": "{:.0%}-{:.0%}".format(*r["emotion_unseen_range"])},
]).set_index("question")
st.table(figures)
st.markdown(
    f"**When is an answer marked \"uncertain\"?** Gender below {GENDER_UNCERTAIN_BELOW:.0%} probability, emotion "
    f"below {EMOTION_UNCERTAIN_BELOW:.0%}, and the emotion also whenever the gender is uncertain (the gender picks "
    "the emotion model). The levels come from the test clips below: clips of new speakers of the training corpora, "
    "grouped by how sure the model was, and how many it got right. Above the levels most answers were right; "
    f"below them, gender was right {_below(GENDER_BINS, GENDER_UNCERTAIN_BELOW):.0%} of the time and emotion "
    f"{_below(EMOTION_BINS, EMOTION_UNCERTAIN_BELOW):.0%}. These figures hold for recordings like the training data only."
)
c1, c2 = st.columns(2)
c1.markdown("**Gender**")
c1.table(bins_table(GENDER_BINS, "gender").set_index("gender probability"))
c2.markdown("**Emotion**")
c2.table(bins_table(EMOTION_BINS, "emotion").set_index("emotion probability"))
st.caption("Sources: reports/metrics.json, reports/test_predictions.csv, studies/gender_fusion/rule_report.md, "
           "studies/emotion_encoder/report.md in the repository.")

st.header("What you can upload")
st.markdown(
    f"Formats: {FORMATS_TEXT}. Up to {MAX_UPLOAD_MB} MB per file (an hour of "
    "CD-quality mono WAV is about 318 MB) and up to an hour long. One speaker, 3-10 seconds of speech, gives the "
    "answers the models were built for. Audio is kept in memory while you use the page and never stored."
)

st.header("About the models")
for tab, (title, path) in zip(st.tabs(list(MODEL_CARDS)), MODEL_CARDS.items()):
    with tab:
        try:
            st.markdown(demote_headings(path.read_text(encoding="utf-8")))
        except OSError:
            st.info(f"No model card at {path.relative_to(PROJECT_ROOT)} yet.")

st.header("Example clips")
st.markdown(
    "The example clips are excerpts of RAVDESS: Livingstone & Russo (2018), *The Ryerson Audio-Visual Database "
    "of Emotional Speech and Song (RAVDESS)*, licensed under "
    "[CC BY-NC-SA 4.0](https://creativecommons.org/licenses/by-nc-sa/4.0/); trimmed to about 3 s and converted "
    f"to 16 kHz mono FLAC. Details: `{EXAMPLES_DIR.relative_to(PROJECT_ROOT)}/README.md`."
)
