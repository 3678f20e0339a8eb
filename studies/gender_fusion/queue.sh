#!/bin/bash
# The six leave-one-corpus-out ECAPA trainings of studies/gender_fusion (plan.md, amendment):
#   studies/gender_fusion/queue.sh CORPUS...      (e.g. two queues side by side, one core each)
# Each fits the shipped recipe on `train` of the other five corpora (val held out, last epoch
# kept) into artifacts/gender_loco/CORPUS; a fold already trained is skipped.
cd "$(dirname "$0")/../.." || exit 2
mkdir -p artifacts/gender_loco
for c in "$@"; do
  if [ -f "artifacts/gender_loco/$c/model.safetensors" ]; then continue; fi
  echo "$(date -Is) start $c" >> artifacts/gender_loco/queue.log
  nice -n 15 .venv/bin/python -m training.gender_train --out "artifacts/gender_loco/$c" --exclude-corpus "$c" nemo \
     --no-test --fit-splits train --keep last > "artifacts/gender_loco/$c.log" 2>&1
  echo "$(date -Is) done $c rc=$?" >> artifacts/gender_loco/queue.log
done
