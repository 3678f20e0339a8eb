#!/bin/bash
# Leave-one-corpus-out ECAPA trainings of studies/gender_fusion (plan.md): usage queue.sh CORPUS...
# Fitted on `train` of the other five corpora only (val held out, last epoch kept), so that val
# can calibrate the fusion without bias.
cd /work/main
for c in "$@"; do
  if [ -f artifacts/gender_loco/$c/model.safetensors ]; then continue; fi
  echo "$(date -Is) start $c" >> artifacts/gender_loco/queue.log
  nice -n 15 .venv/bin/python -m training.gender_train --out artifacts/gender_loco/$c --exclude-corpus $c \
     --no-test --fit-splits train --keep last > artifacts/gender_loco/$c.log 2>&1
  echo "$(date -Is) done $c rc=$?" >> artifacts/gender_loco/queue.log
done
