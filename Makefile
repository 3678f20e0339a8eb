# One command per job; each creates .venv from requirements.txt when needed.
PY := .venv/bin/python
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup app test train evaluate recipe-cv experiments bench demo notebooks gender-holdout emotion-holdout corpus-pitch

setup:
	@bash scripts/setup.sh

app: setup  ## set up and start the web app (until it lands: score a demo folder)
	@if [ -f app.py ]; then .venv/bin/streamlit run app.py; else $(MAKE) --no-print-directory demo; fi

demo: setup  ## score a few clips of the shared corpus to demo_results.csv
	$(PY) script.py ../shared/data/ravdess/Actor_19 -o demo_results.csv --overwrite

test: setup  ## set up and run the test suite
	$(PY) -m pytest -q

train: setup  ## rebuild every shipped model from ../shared/data
	$(PY) -m pipeline.train

evaluate: setup  ## speaker-independent metrics -> reports/ and the model cards
	$(PY) -m pipeline.evaluate

recipe-cv: setup  ## training length of the emotion CNNs, by cross-validation over speakers -> reports/recipe_cv.*
	$(PY) -m studies.recipe_cv

experiments: setup  ## what helps the emotion models -> reports/experiments.*
	$(PY) -m studies.experiments

HOLDOUT_CORPORA := ased ravdess librispeech
HOLDOUT_DIR := artifacts/gender_holdout

gender-holdout: setup  ## gender on corpora never seen: one model per held-out corpus (about 90 minutes on 2 cores) -> reports/gender_holdout.*
	for c in $(HOLDOUT_CORPORA); do $(PY) -m training.gender_train --out $(HOLDOUT_DIR)/$$c --exclude-corpus $$c --no-test & done; wait
	$(PY) -m studies.gender_holdout --models $(addprefix $(HOLDOUT_DIR)/,$(HOLDOUT_CORPORA)) --out reports/gender_holdout

emotion-holdout: setup  ## emotion on corpora never seen: the shipped recipe without RAVDESS, ASED, EMOVO in turn (about an hour) -> reports/emotion_holdout.*
	$(PY) -m studies.emotion_holdout --out reports/emotion_holdout

corpus-pitch: setup  ## median F0 per corpus and gender (a few minutes) -> reports/corpus_pitch.*
	$(PY) -m studies.corpus_pitch --out reports/corpus_pitch

bench: setup  ## speed and memory on this machine -> reports/bench.*
	$(PY) -m pipeline.bench

notebooks: setup  ## execute notebooks/ headless and rewrite their outputs (about 15 minutes on 2 cores)
	$(PY) notebooks/run.py
