"""script.py --group folder|voice (pipeline.grouping): one gender per voice, the emotion routed by it."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

import script
from pipeline import batch, grouping
from pipeline.batch import CSV_COLUMNS, InputFile, prediction_row
from pipeline.cascade import Cascade
from pipeline.emotion import EMOTION_LABELS, EmotionModel
from pipeline.testing import SR, speech_like


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def model_args(tiny_models, gender: str = "female_gender") -> list[str]:
    return ["--gender-model", str(tiny_models[gender]), "--male-model", str(tiny_models["male"]),
            "--female-model", str(tiny_models["female"]), "-q", "-j", "1"]


@pytest.fixture(scope="module")
def cascades(tiny_models) -> dict[str, Cascade]:
    """``"female/hard"``, ``"male/soft"``, ...: tiny cascades that call every clip female (or male), p=0.982;
    the male emotion model answers *sad*, the female one *angry*."""
    from pipeline.gender import GenderClassifier

    male, female = (EmotionModel.load(tiny_models[g]) for g in ("male", "female"))
    genders = {g: GenderClassifier.load(tiny_models[f"{g}_gender"]) for g in ("female", "male")}
    return {f"{g}/{r}": Cascade(genders[g], male, female, routing=r) for g in genders for r in ("hard", "soft")}


@pytest.fixture(scope="module")
def model_probs(cascades) -> dict[str, np.ndarray]:
    """Each tiny emotion model's answer ``[8]`` (the same for every clip)."""
    models = cascades["female/hard"].emotion_models
    return {g: m.predict_proba(np.zeros((1, m.config.n_features)))[0] for g, m in models.items()}


@pytest.fixture
def two_folders(tmp_path, wav_file) -> Path:
    """``in/a``: x0, x1 (2 s), x2 (6 s); ``in/b``: y0, y1 (2 s) and an unreadable file."""
    for i in range(2):
        wav_file(f"in/a/x{i}.wav", y=speech_like(2.0, f0=120, seed=i))
        wav_file(f"in/b/y{i}.wav", y=speech_like(2.0, f0=230, seed=10 + i))
    wav_file("in/a/x2.wav", y=speech_like(6.0, f0=120, seed=2))
    (tmp_path / "in" / "b" / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    return tmp_path / "in"


def scored_rows(cascades, files: list[InputFile], *, routing: str, male: set[str] = frozenset()) -> dict[str, dict]:
    """Rows as the scoring pass writes them; the files named in ``male`` judged male, the others female."""
    rows = {}
    for f in files:
        cascade = cascades[f"{'male' if f.name in male else 'female'}/{routing}"]
        rows[f.name] = prediction_row(cascade.predict_file(f.path, name=f.name), name=f.name)
    return rows


def group(cascades, files, rows, mode: str, routing: str, **kwargs) -> grouping.Grouping:
    cascade = cascades[f"female/{routing}"]
    return grouping.group_rows(files, rows, mode, routing=routing, settings=batch.FeatureSettings.of(cascade),
                               emotion_models=lambda: cascade.emotion_models, **kwargs)


# -- labels ------------------------------------------------------------------------------------------------


def test_folder_labels_are_the_folders_as_given(two_folders, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = batch.discover(["in"], recursive=True)
    labels = grouping.folder_voices(files)
    assert labels == {"a/x0.wav": "in/a", "a/x1.wav": "in/a", "a/x2.wav": "in/a", "b/broken.wav": "in/b",
                      "b/y0.wav": "in/b", "b/y1.wav": "in/b"}
    # two spellings of one folder are one voice, labelled as first written; a file given alone: its folder
    same = batch.discover(["in/a/x0.wav", "./in/a/../a/x1.wav", str(tmp_path / "in/a/x2.wav"), "in/b/y0.wav"])
    assert list(grouping.folder_voices(same).values()) == ["in/a", "in/a", "in/a", "in/b"]
    assert grouping.folder_label(InputFile(Path("x.wav"), "x.wav")) == "."
    assert grouping.folder_label(InputFile(Path("b/k/x.wav"), "s3://b/k/x.wav", "s3://b/k/x.wav")) == "s3://b/k"


def test_voice_labels_follow_input_order():
    rng = np.random.default_rng(0)
    centres = np.zeros((2, 256))
    centres[0, :128] = centres[1, 128:] = 1.0  # two voices far apart (cosine distance 1)
    X = np.stack([centres[i] + 0.05 * np.abs(rng.standard_normal(256)) for i in (1, 1, 0, 1, 0)])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = grouping.cluster_files(list("pqrst"), X, np.full(5, 2.0))
    assert labels == {"p": "A", "q": "A", "r": "B", "s": "A", "t": "B"}


# -- one gender per voice, the emotion routed by it ------------------------------------------------------------


def test_a_voice_whose_files_disagree_gets_one_gender_and_the_emotion_follows(cascades, two_folders, model_probs):
    files = batch.discover([two_folders], recursive=True)
    rows = scored_rows(cascades, files, routing="hard", male={"a/x1.wav"})
    assert (rows["a/x1.wav"]["gender"], rows["a/x1.wav"]["emotion"]) == ("male", "sad")
    result = group(cascades, files, rows, "folder", "hard")
    out = {r["file"]: r for r in result.rows}
    # in/a: 2 s female, 2 s male, 6 s female -> P(female) = (2 * .982 + 2 * .018 + 6 * .982) / 10
    voice_a = next(v for v in result.voices if v.label.endswith("a"))
    assert voice_a.gender == "female" and voice_a.speech_s == pytest.approx(10.0, abs=0.1)
    assert voice_a.gender_probabilities["female"] == pytest.approx(0.7892, abs=2e-3)
    for name in ("a/x0.wav", "a/x1.wav", "a/x2.wav"):
        row = out[name]
        assert row["voice"] == voice_a.label
        assert (row["gender"], row["emotion"], row["emotion_model"]) == ("female", "angry", "female")
        assert float(row["gender_confidence"]) == pytest.approx(voice_a.gender_probabilities["female"], abs=1e-4)
        for i, label in enumerate(EMOTION_LABELS):  # the female model's own answer, not a mix
            assert float(row[f"prob_{label}"]) == pytest.approx(model_probs["female"][i], abs=1e-4)
    assert out["a/x1.wav"]["gender_prob_male"] == rows["a/x1.wav"]["gender_prob_male"] == "0.9820"  # its own
    assert result.rerouted == ["a/x1.wav"]  # only the file whose model changed is scored again


def test_the_longer_speech_decides_and_soft_routing_blends_with_the_voices_weights(cascades, two_folders,
                                                                                   model_probs):
    files = batch.discover([two_folders], recursive=True)
    rows = scored_rows(cascades, files, routing="soft", male={"a/x2.wav"})  # the 6 s file is male
    result = group(cascades, files, rows, "folder", "soft")
    voice_a = next(v for v in result.voices if v.label.endswith("a"))
    female = (2 * 0.982 + 2 * 0.982 + 6 * 0.018) / 10
    assert voice_a.gender == "male" and voice_a.gender_probabilities["female"] == pytest.approx(female, abs=2e-3)
    weights = voice_a.gender_probabilities
    blend = weights["male"] * model_probs["male"] + weights["female"] * model_probs["female"]
    blend /= blend.sum()
    for row in result.rows[:3]:
        assert (row["voice"], row["gender"], row["emotion_model"]) == (voice_a.label, "male", "blended")
        assert float(row["gender_confidence"]) == pytest.approx(weights["male"], abs=1e-4)
        assert [float(row[f"prob_{e}"]) for e in EMOTION_LABELS] == pytest.approx(list(blend), abs=1e-4)
        assert row["emotion"] == EMOTION_LABELS[int(np.argmax(blend))]
    assert result.rerouted == ["a/x0.wav", "a/x1.wav", "a/x2.wav"]  # soft: new weights for every file
    # in/b agrees with itself: its rows keep their scores, with the voice's label and confidence
    out = {r["file"]: r for r in result.rows}
    for name in ("b/y0.wav", "b/y1.wav"):
        assert {**out[name], "voice": ""} == rows[name]


def test_voice_mode_clusters_synthetic_voices_and_grouping_again_changes_nothing(cascades, two_folders):
    files = batch.discover([two_folders], recursive=True)
    rows = scored_rows(cascades, files, routing="hard", male={"a/x2.wav"})
    result = group(cascades, files, rows, "voice", "hard")
    voices = {r["file"]: r["voice"] for r in result.rows}
    assert voices == {"a/x0.wav": "A", "a/x1.wav": "A", "a/x2.wav": "A", "b/broken.wav": "",
                      "b/y0.wav": "B", "b/y1.wav": "B"}  # two pitches, two voices, in input order
    assert [(v.label, v.gender) for v in result.voices] == [("A", "male"), ("B", "female")]  # A: 6 s male, 4 s not
    assert result.rerouted == ["a/x0.wav", "a/x1.wav"]
    assert {(r["gender"], r["emotion"]) for r in result.rows[:3]} == {("male", "sad")}
    again = group(cascades, files, {r["file"]: r for r in result.rows}, "voice", "hard")
    assert again.rows == result.rows and again.rerouted == []
    back = group(cascades, files, {r["file"]: r for r in result.rows}, "none", "hard")  # --resume --group none
    assert back.rows == [{**rows[f.name], "voice": ""} for f in files]


# -- the CSV through script.py -------------------------------------------------------------------------------


def test_failures_keep_their_row_with_an_empty_voice(tmp_path, two_folders, wav_file, tiny_models):
    wav_file("in/b/silent.wav", y=np.zeros(2 * SR, np.float32))
    wav_file("in/b/short.wav", y=speech_like(0.1))
    for mode in ("folder", "voice"):
        out = tmp_path / f"{mode}.csv"
        assert script.main([str(two_folders), "-r", "-o", str(out), "--group", mode, *model_args(tiny_models)]) == 1
        header, rows = read_rows(out)
        assert tuple(header) == CSV_COLUMNS
        assert [r["file"] for r in rows] == ["a/x0.wav", "a/x1.wav", "a/x2.wav", "b/broken.wav", "b/short.wav",
                                             "b/silent.wav", "b/y0.wav", "b/y1.wav"]
        by_name = {r["file"]: r for r in rows}
        for name, status in (("b/broken.wav", "unreadable"), ("b/short.wav", "too_short"),
                             ("b/silent.wav", "silent")):
            assert (by_name[name]["status"], by_name[name]["voice"], by_name[name]["gender"]) == (status, "", "")
            assert by_name[name]["error"]
        assert all(r["voice"] for r in rows if r["status"] == "ok")


def test_group_none_writes_todays_rows_with_an_empty_voice_column(tmp_path, two_folders, tiny_models, cascades):
    out = tmp_path / "out.csv"
    assert script.main([str(two_folders), "-r", "-o", str(out), *model_args(tiny_models)]) == 1
    header, rows = read_rows(out)
    assert header[:3] == ["file", "voice", "status"] and tuple(header) == CSV_COLUMNS
    files = batch.discover([two_folders], recursive=True)
    expected = scored_rows(cascades, files, routing="hard")
    assert rows == [expected[f.name] for f in files]
    assert all(r["voice"] == "" for r in rows)


def test_resume_then_group_and_regroup(tmp_path, two_folders, tiny_models, cascades):
    """A run cut short resumes into a grouped CSV; grouping differently later re-routes from the rows alone."""
    files = batch.discover([two_folders], recursive=True)
    scored = scored_rows(cascades, files, routing="hard", male={"a/x1.wav"})
    out = tmp_path / "out.csv"
    batch.rewrite(out, [scored[f.name] for f in files[:2]])  # interrupted after two files (both in/a)
    args = [str(two_folders), "-r", "-o", str(out), *model_args(tiny_models)]  # the rest judged female
    assert script.main([*args, "--resume", "--group", "folder"]) == 1
    _, rows = read_rows(out)
    assert [r["file"] for r in rows] == [f.name for f in files]  # every input once, in input order
    a = [r for r in rows if r["file"].startswith("a/")]
    # x0 female (2 s), x1 male (2 s), x2 scored now: female (6 s) -> in/a is female; x1 re-routed
    assert {(r["voice"], r["gender"], r["emotion"], r["emotion_model"]) for r in a} == {
        (str(two_folders / "a"), "female", "angry", "female")}
    assert a[1]["gender_prob_male"] == "0.9820"
    grouped = out.read_bytes()
    assert script.main([*args, "--resume", "--group", "folder"]) == 1
    assert out.read_bytes() == grouped  # grouping again is a no-op
    assert script.main([*args, "--resume"]) == 1  # --group none: every file back to its own gender
    _, rows = read_rows(out)
    x1 = rows[1]
    assert (x1["voice"], x1["gender"], x1["gender_confidence"], x1["emotion"], x1["emotion_model"]) == (
        "", "male", "0.9820", "sad", "male")
    assert all(r["voice"] == "" for r in rows)


def test_group_is_refused_with_segments(tmp_path, two_folders, tiny_models, capsys):
    out = tmp_path / "out.csv"
    code = script.main([str(two_folders), "-o", str(out), "--segments", "--group", "voice", *model_args(tiny_models)])
    assert code == 2 and not out.exists()
    assert "--segments already gives each segment its voice" in capsys.readouterr().err


def test_worker_processes_give_the_same_rows(cascades, two_folders, monkeypatch):
    files = batch.discover([two_folders], recursive=True)
    rows = scored_rows(cascades, files, routing="soft", male={"a/x1.wav"})
    alone = group(cascades, files, rows, "voice", "soft", jobs=1)
    monkeypatch.setattr(grouping, "MIN_FILES_PER_WORKER", 1)
    pooled = group(cascades, files, rows, "voice", "soft", jobs=2)
    assert pooled.rows == alone.rows and pooled.rerouted == alone.rerouted and pooled.problems == {}


# -- real voices ---------------------------------------------------------------------------------------------


def _real_clips(root: Path, tmp_path: Path, actors: dict[str, str], per_actor: int = 4) -> list[Path]:
    """``per_actor`` RAVDESS test clips of each actor (of several emotions), one folder per actor."""
    folders = []
    for actor in actors:
        folder = tmp_path / "in" / actor
        folder.mkdir(parents=True)
        clips = sorted((root / "ravdess" / f"Actor_{actor}").glob("*.flac"))[::15][:per_actor]
        for clip in clips:
            shutil.copy(clip, folder / clip.name)
        folders.append(folder)
    return folders


def test_real_actors_are_two_voices_with_their_genders(shared_data, tmp_path):
    """Two RAVDESS test actors (a man, a woman), four clips of four emotions each, one folder each."""
    actors = {"19": "male", "20": "female"}
    folders = _real_clips(shared_data, tmp_path, actors)
    out = tmp_path / "voice.csv"
    assert script.main([*map(str, folders), "-o", str(out), "--group", "voice", "-q", "-j", "1"]) == 0
    _, rows = read_rows(out)
    voices: dict[str, set] = {}
    for row in rows:
        actor = row["file"].split("-")[-1].split(".")[0]
        voices.setdefault(row["voice"], set()).add((actor, row["gender"]))
    # every voice is one actor, with the actor's gender; acted emotions may split an actor into several
    assert all(len(members) == 1 for members in voices.values()), voices
    assert set().union(*voices.values()) == set(actors.items())
    assert script.main([*map(str, folders), "-o", str(out), "--group", "folder", "--resume", "-q", "-j", "1"]) == 0
    _, rows = read_rows(out)
    assert {(r["voice"], r["gender"]) for r in rows} == {(str(folders[0]), "male"), (str(folders[1]), "female")}
