"""The "How it works" page, for visitors: what the app does, what the models can and cannot do, with the figures.

Every figure is read from the project's reports (:mod:`pipeline.app_figures`) or from
:mod:`pipeline.confidence` (checked against the reports by the tests); nothing is typed in.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from pipeline.app_figures import CONDITION_WORDS, CORPUS_WORDS, read_figures
from pipeline.app_views import EXAMPLES_DIR, FORMATS_TEXT, MAX_UPLOAD_MB, TIMELINE_MIN_S
from pipeline.confidence import (
    EMOTION_BINS,
    EMOTION_UNCERTAIN_BELOW,
    GENDER_BINS,
    GENDER_UNCERTAIN_BELOW,
    RELIABILITY,
    percent,
)
from pipeline.paths import PROJECT_ROOT

st.html("<style>[data-testid='stTable'] { overflow-x: auto; }</style>")
figures = read_figures()
r = RELIABILITY


def _below(bins, level: float) -> float:
    """Share right over the reliability bins below ``level`` (clip-weighted)."""
    rows = [(n, share) for lo, hi, n, share in bins if hi <= level and n]
    return sum(n * share for n, share in rows) / sum(n for n, _ in rows)


def bins_table(bins, what: str) -> pd.DataFrame:
    return pd.DataFrame([{"the model's probability": f"{lo:.0%}-{hi:.0%}", "test clips": f"{n:,}",
                          "answers right": percent(share)} for lo, hi, n, share in bins if n])


st.title("How it works")
st.markdown(
    "**What the app does.** It listens to the voice in a recording and answers two questions: does the voice "
    "sound like a man's or a woman's, and which of eight emotions does it sound like (neutral, calm, happy, sad, "
    "angry, fearful, disgust, surprised). Women and men express emotions with different voices, so there are two "
    "emotion models, one trained on women's voices and one on men's, and the gender answer picks which of them "
    "listens. That is why an unclear gender makes the emotion unclear too.\n\n"
    f"**Longer recordings** ({TIMELINE_MIN_S:.0f} s or more) are cut where someone speaks, the pieces are grouped "
    "by how the voices sound, each voice gets one gender from all its speech, and each piece its own emotion. "
    "The app does not know who the people are: voices are called A, B, C in the order they first speak.\n\n"
    "**What the answers mean.** Each answer comes with the model's own probability. Below the figures show how "
    "often answers were right in tests on speakers the models had never heard. An emotion answer is how the "
    "voice *sounds*; it says nothing certain about how the person feels."
)

st.header("What the models can do")
share_lines = [f"* **Gender:** right for {r['gender_new_speakers']:.0%} of new speakers recorded like the training "
               "data."]
emotion = f"* **Emotion:** right for {r['emotion_new_speakers']:.0%} of such clips (guessing would give 12.5%)"
if figures.test_clips:
    emotion += f"; measured on {figures.test_clips:,} test clips of {figures.test_speakers} people"
share_lines.append(emotion + ".")
st.markdown("\n".join(share_lines))
if figures.emotion_by_corpus:
    st.markdown("**Emotion, by kind of recording** (speakers never heard in training):")
    st.table(pd.DataFrame([{"recordings": CORPUS_WORDS.get(c, c), "test clips": f"{s.n:,}",
                            "emotion right": percent(s.value)}
                           for c, s in sorted(figures.emotion_by_corpus.items(), key=lambda kv: -kv[1].value)]
                          ).set_index("recordings"))
if figures.emotion_by_label:
    easy = sorted(figures.emotion_by_label.items(), key=lambda kv: -kv[1])
    st.markdown("**Some emotions are easier than others.** Share of each emotion's test clips recognised: "
                + ", ".join(f"{e} {percent(v)}" for e, v in easy) + ".")
degraded = {c: s for c, s in figures.gender_by_condition.items() if c in CONDITION_WORDS}
if degraded and "clean" in figures.gender_by_condition:
    st.markdown(
        "**Gender on poorer recordings.** The same test clips as recorded: gender right "
        f"{percent(figures.gender_by_condition['clean'].value)}; "
        + "; ".join(f"as {CONDITION_WORDS[c]}: {percent(s.value)}" for c, s in degraded.items()) + ".")

st.header("What they cannot do")
lo_g, hi_g = r["gender_unseen_range"]
lo_e, hi_e = r["emotion_unseen_range"]
limits = [
    f"* **Recordings unlike the training data** (another language, microphone or speaking style): when a whole "
    f"collection of recordings was left out of training and tested afterwards, gender was right "
    f"{lo_g:.0%}-{hi_g:.0%} of the time and emotion only {lo_e:.0%}-{hi_e:.0%}, however sure the model said it "
    "was. Treat the emotion as a hint, not a fact.",
    "* **Everyday conversation.** The models learned from acted and read speech (English, Amharic, Italian, "
    "Polish), where emotions are clear. Real conversations are calmer and more mixed.",
    "* **Voices outside the training range**: children, and voices pitched unusually for their gender, are "
    "misjudged more often. Gender here means how a voice sounds, not who the person is.",
    "* **Very short speech** (under about a second) is hard to judge: 3-10 seconds of one speaker works best.",
]
if figures.voices:
    v = figures.voices
    limits.append(
        "* **Telling voices apart** is approximate. On simulated conversations that sound like one room (some "
        f"noise, some overlap; {int(v['recordings'])} tested), the number of voices was right in "
        f"{percent(v['count_right'])} of them and off by at most one in {percent(v['count_within_one'])}; the "
        f"gender of a voice was right for {percent(v['gender_per_voice'])} of the speech. Two similar voices may "
        "be merged, one person may be split in two, and people speaking at once are given to one voice.")
st.markdown("\n".join(limits))

st.header("How sure is \"sure\"?")
st.markdown(
    f"An answer is marked **uncertain** when the gender's probability is below {GENDER_UNCERTAIN_BELOW:.0%} or the "
    f"emotion's is below {EMOTION_UNCERTAIN_BELOW:.0%}, and the emotion also whenever the gender is uncertain, "
    "because the gender picks the emotion model. In the tests below (new speakers recorded like the training "
    f"data), answers under those levels were right {percent(_below(GENDER_BINS, GENDER_UNCERTAIN_BELOW))} of the "
    f"time for gender and {percent(_below(EMOTION_BINS, EMOTION_UNCERTAIN_BELOW))} for emotion; above them, more "
    "often, as the tables show. The emotion figures assume the gender was right, as it almost always was in these "
    "tests. On recordings unlike the training data the same probabilities mean much less."
)
c1, c2 = st.columns(2)
c1.markdown("**Gender**")
c1.table(bins_table(GENDER_BINS, "gender").set_index("the model's probability"))
c2.markdown("**Emotion**")
c2.table(bins_table(EMOTION_BINS, "emotion").set_index("the model's probability"))
st.markdown(
    "**Time shares are not probabilities.** For a voice in a long recording, \"angry 60%\" means anger was heard "
    "in 60% of that voice's speaking time, not that the model is 60% sure."
)

st.header("What you can upload")
st.markdown(
    f"Formats: {FORMATS_TEXT}. Up to {MAX_UPLOAD_MB} MB per file (an hour of "
    "CD-quality mono WAV is about 318 MB) and up to an hour long. Several files at once are fine. Audio is kept "
    "in memory while you use the page and never stored; your recordings and results stay on the page while you "
    "read this one."
)

st.header("Example clips and credits")
st.markdown(
    "The example clips are excerpts of RAVDESS: Livingstone & Russo (2018), *The Ryerson Audio-Visual Database "
    "of Emotional Speech and Song (RAVDESS)*, licensed under "
    "[CC BY-NC-SA 4.0](https://creativecommons.org/licenses/by-nc-sa/4.0/); trimmed to about 3 s and converted "
    f"to 16 kHz mono FLAC ({EXAMPLES_DIR.relative_to(PROJECT_ROOT)}/README.md in the project). The models were "
    "trained on RAVDESS, SAVEE, EMOVO, nEMO, ASED, LibriSpeech and speechocean762; the app is for research and "
    "non-commercial use."
)
