"""What the web app keeps in ``st.session_state`` so that nothing is lost between pages.

Streamlit forgets a widget's value when the visitor opens another page (here: "How it works")
and comes back: the upload box and the recorder start empty again. So the clips themselves
(name and bytes, read from memory, never written to disk) live in the session under
:data:`CLIPS_KEY`, and the widgets only *add* to or *remove* from that list:
:func:`sync_widget` compares what a widget holds now with what it held on the previous run
(:data:`SEEN_KEY`), adds the new files and drops the ones the visitor removed. A widget that
comes back empty after a page change held nothing on "its" previous run, so it removes nothing.
The results (:data:`RESULTS_KEY`) are keyed by :func:`clip_id` and kept as long as their clip.

Every key the app keeps is defined here; the functions take the state mapping as an argument
(``st.session_state`` in the app, a plain dict in tests).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, MutableMapping

CLIPS_KEY = "ser_clips"  # list[Clip]: every recording on the page, in the order it was added
SEEN_KEY = "ser_seen"  # {widget key: [file ids it held on the previous run]}
RESULTS_KEY = "ser_results"  # {clip_id(...): ClipResult}
EXAMPLES_KEY = "ser_examples"  # example files added with the "Try an example" buttons
INPUTS_KEY = "ser_inputs"  # bumped by "Clear" so the upload and record widgets start empty
AUTO_KEY = "ser_analyse_now"  # set by an example button: analyse without pressing Analyse
MESSAGES_KEY = "ser_messages"  # errors of the last analysis, shown after the page is redrawn


@dataclass(frozen=True)
class Clip:
    """One recording on the page.

    Attributes:
        name: the file name shown (made unique on the page by :func:`page_clips`).
        data: the file's bytes, as uploaded or recorded.
        source: ``"upload"``, ``"microphone"`` or ``"example"``.
        token: the widget's file id (uploads, microphone) or the example's file name.
    """

    name: str
    data: bytes
    source: str
    token: str


def clip_id(name: str, data: bytes) -> tuple[str, int, str]:
    """Identity of a clip on the page: ``(name, size, content hash)``."""
    return (name, len(data), hashlib.sha256(data).hexdigest())


def sync_widget(state: MutableMapping, widget_key: str, files: Iterable, *, source: str,
                fresh: bool, name: str | None = None) -> None:
    """Add the files a widget gained since its previous run to :data:`CLIPS_KEY`; drop those it lost.

    Args:
        state: the session state.
        widget_key: the widget's key (its previous contents are remembered under it).
        files: what the widget holds now: objects with ``file_id``, ``name`` and ``getvalue()``
            (Streamlit's ``UploadedFile``).
        source: stored in :attr:`Clip.source`.
        fresh: True when the widget was just created (first run, or back from another page):
            it held nothing before, so nothing is removed.
        name: the name to give the clips instead of the file's own (the microphone's ``recording.wav``).
    """
    clips: list[Clip] = state.setdefault(CLIPS_KEY, [])
    seen_by_widget: dict = state.setdefault(SEEN_KEY, {})
    before = set() if fresh else set(seen_by_widget.get(widget_key, []))
    files = list(files)
    now = [str(f.file_id) for f in files]
    gone = before - set(now)
    if gone:
        clips[:] = [c for c in clips if not (c.source == source and c.token in gone)]
    have = {c.token for c in clips if c.source == source}
    for f, token in zip(files, now):
        if token not in have:
            clips.append(Clip(name or f.name, f.getvalue(), source, token))
    seen_by_widget[widget_key] = now


def add_example(state: MutableMapping, file: str, data: bytes) -> None:
    """Put an example clip on the page (once) and ask for it to be analysed."""
    clips: list[Clip] = state.setdefault(CLIPS_KEY, [])
    if not any(c.source == "example" and c.token == file for c in clips):
        clips.append(Clip(f"example: {file}", data, "example", file))
    state[AUTO_KEY] = True


def clear(state: MutableMapping) -> None:
    """Remove every clip and result; the upload and record widgets start empty."""
    state[RESULTS_KEY] = {}
    state[CLIPS_KEY] = []
    state[SEEN_KEY] = {}
    state[MESSAGES_KEY] = []
    state[INPUTS_KEY] = state.get(INPUTS_KEY, 0) + 1


def page_clips(state: MutableMapping) -> list[Clip]:
    """The clips on the page in order, with names made unique (``"a.wav"``, ``"a.wav (2)"``)."""
    out, names = [], set()
    for c in state.get(CLIPS_KEY, []):
        name, n = c.name, 1
        while name in names:  # two uploads with the same name stay apart
            n += 1
            name = f"{c.name} ({n})"
        names.add(name)
        out.append(Clip(name, c.data, c.source, c.token))
    return out
