#!/usr/bin/env bash
# Create a virtual environment and install a profile's requirements into it.
#   PROFILE=full (default): .venv from requirements.txt (training, notebooks, tests, the runtime)
#   PROFILE=runtime:        .venv-runtime from requirements-runtime.txt (the app and script.py on
#                           ONNX Runtime, no torch or TensorFlow; docs/runtime.md)
# Idempotent: does nothing when the environment already matches its requirements file.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PROFILE=${PROFILE:-full}
case "$PROFILE" in
  full) venv=.venv; reqs=requirements.txt ;;
  runtime) venv=.venv-runtime; reqs=requirements-runtime.txt ;;
  *) echo "setup: unknown PROFILE=$PROFILE (full or runtime)" >&2; exit 2 ;;
esac
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv "$venv"
fi
stamp=$venv/.requirements.sha256
want=$(sha256sum "$reqs" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing $reqs into $venv (first time: a few minutes for the full profile, about a minute for the runtime)" >&2
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$reqs"
  if [ "$PROFILE" = runtime ]; then
    # only the wheel's silero_vad.onnx is used: without its declared torch dependency
    "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps "$(grep -E '^silero-vad==' requirements.txt)"
  fi
  echo "$want" > "$stamp"
fi
