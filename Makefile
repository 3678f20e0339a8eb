# One command per job; each creates .venv from requirements.txt when needed.
PY := .venv/bin/python
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup setup-ray test-ray setup-runtime app-runtime test-runtime export-onnx app test test-fast train evaluate recipe-cv experiments bench demo notebooks gender-holdout emotion-holdout corpus-pitch

setup:
	@bash scripts/setup.sh

setup-ray: setup  ## add the optional Ray engine (script.py --engine ray, docs/ray.md) to .venv
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-ray.txt

test-ray: setup-ray  ## the Ray engine's tests alone, on a two-node local Ray cluster (about 2 minutes)
	$(PY) -m pytest -q tests/test_ray.py

setup-runtime:  ## .venv-runtime: the runtime profile (ONNX Runtime, no torch or TensorFlow; docs/runtime.md)
	@PROFILE=runtime bash scripts/setup.sh

app-runtime: setup-runtime  ## the web app on the runtime profile
	.venv-runtime/bin/streamlit run app.py

# The tests that need neither torch nor TensorFlow (test_structure.py reads sources only: `make test`
# covers it); on the runtime profile the framework halves of test_onnx_parity.py skip themselves.
test-runtime: setup-runtime  ## every test on the runtime profile; those of the training stack skip, saying why (pytest, hypothesis, onnx for the test fakes and selenium for the browser tests, added to .venv-runtime as pinned in requirements.txt)
	grep -E '^(pytest|hypothesis|onnx|selenium)==' requirements.txt | .venv-runtime/bin/python -m pip install --disable-pip-version-check -q -r /dev/stdin
	.venv-runtime/bin/python -m pytest -q

export-onnx: setup  ## re-export every shipped network to ONNX beside its weights (after `make train`)
	$(PY) -m training.export_onnx

app: setup  ## set up and start the web app
	.venv/bin/streamlit run app.py

demo: setup  ## score a few clips of the shared corpus to demo_results.csv
	$(PY) script.py ../shared/data/ravdess/Actor_19 -o demo_results.csv --overwrite

test: setup  ## set up and run the test suite (everything: what CI runs)
	$(PY) -m pytest -q

test-fast: setup  ## the fast loop while editing: every test not marked slow (about 30 s)
	$(PY) -m pytest -q -m "not slow"

train: setup  ## rebuild every shipped model from ../shared/data, then their ONNX exports
	$(PY) -m pipeline.train --processes 2
	$(PY) -m training.export_onnx

evaluate: setup  ## speaker-independent metrics -> reports/ and the model cards
	$(PY) -m pipeline.evaluate

recipe-cv: setup  ## training length of the emotion CNNs, by cross-validation over speakers -> studies/recipe_cv/report.*
	$(PY) -m studies.recipe_cv --out studies/recipe_cv/report

experiments: setup  ## what helps the emotion models -> studies/experiments/report.*
	$(PY) -m studies.experiments --out studies/experiments/report

HOLDOUT_CORPORA := ased ravdess librispeech
HOLDOUT_DIR := artifacts/gender_holdout

gender-holdout: setup  ## gender on corpora never seen: one model per held-out corpus (about 90 minutes on 2 cores) -> studies/gender_holdout/report.*
	for c in $(HOLDOUT_CORPORA); do $(PY) -m training.gender_train --out $(HOLDOUT_DIR)/$$c --exclude-corpus $$c --no-test & done; wait
	$(PY) -m studies.gender_holdout --models $(addprefix $(HOLDOUT_DIR)/,$(HOLDOUT_CORPORA)) --out studies/gender_holdout/report

emotion-holdout: setup  ## emotion on corpora never seen: the shipped recipe without RAVDESS, ASED, EMOVO in turn (about an hour) -> studies/emotion_holdout/report.*
	$(PY) -m studies.emotion_holdout --out studies/emotion_holdout/report

corpus-pitch: setup  ## median F0 per corpus and gender (a few minutes) -> studies/corpus_pitch/report.*
	$(PY) -m studies.corpus_pitch --out studies/corpus_pitch/report

bench: setup  ## speed and memory on this machine -> reports/bench.*
	$(PY) -m pipeline.bench

notebooks: setup  ## execute notebooks/ headless and rewrite their outputs (about 15 minutes on 2 cores)
	$(PY) notebooks/run.py
