#!/usr/bin/env bash
# Every fit of plan.md, two at a time with one thread each; a fit whose predictions exist is skipped.
# Usage: studies/emotion_encoder/queue.sh [CANDIDATE ...]   (default: every candidate of the first round)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2
candidates=("$@")
[ ${#candidates[@]} -gt 0 ] || candidates=(librosa enc_last both_last both_all both_wsum both_last_mean)
folds=(val ravdess savee ased emovo nemo)
for c in "${candidates[@]}"; do
  for f in "${folds[@]}"; do
    [[ "$c" == *_nonemo && "$f" == nemo ]] && continue   # identical to the candidate's own nEMO fold
    [ -f "studies/emotion_encoder/preds/$c/$f.csv.gz" ] || echo "$c $f"
  done
done | xargs -P 2 -L 1 sh -c '.venv/bin/python -m studies.emotion_encoder fit "$0" "$1"'
