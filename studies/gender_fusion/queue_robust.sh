#!/bin/bash
# The leave-one-corpus-out folds of the robust ECAPA recipe (plan.md, amendment 3; robust_plan.md):
#   studies/gender_fusion/queue_robust.sh CORPUS...     (one core each; two queues side by side at most)
# Each fits the robust recipe on `train` of the other five corpora (val held out, last epoch kept;
# nEMO is in no gender fitting) into artifacts/gender_loco_robust/CORPUS; a fold already trained
# is skipped. With LibriSpeech held out there are no LibriSpeech readers to make babble from, so
# that fold's noise is white and pink only.
cd "$(dirname "$0")/../.." || exit 2
mkdir -p artifacts/gender_loco_robust
for c in "$@"; do
  if [ -f "artifacts/gender_loco_robust/$c/model.safetensors" ]; then continue; fi
  noise=white,pink,babble
  if [ "$c" = librispeech ]; then noise=white,pink; fi
  echo "$(date -Is) start $c" >> artifacts/gender_loco_robust/queue.log
  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m training.gender_train --out "artifacts/gender_loco_robust/$c" \
     --exclude-corpus "$c" nemo --no-test --fit-splits train --keep last --set noise_kinds=$noise \
     --set channel_copies=2 --set channel_p_telephone=0.3 --set channel_p_pcm_u8=0.3 --set "exclude_speakers=[]" \
     > "artifacts/gender_loco_robust/$c.log" 2>&1
  echo "$(date -Is) done $c rc=$?" >> artifacts/gender_loco_robust/queue.log
done
