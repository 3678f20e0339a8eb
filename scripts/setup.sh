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
# The runtime profile installs with uv (parallel downloads): about 40 s from an empty cache where pip
# takes about 5 minutes (docs/runtime.md). uv itself goes to a temporary folder, not into the venv;
# any failure (no uv wheel, no index it can reach) falls back to pip, which honours pip.conf.
UV_VERSION=0.9.30
runtime_with_uv() {
  local venv=$1 reqs=$2 silero=$3 tmp ok=1
  tmp=$(mktemp -d)
  if "$PYTHON" -m pip install --disable-pip-version-check -q --target "$tmp" "uv==$UV_VERSION" >/dev/null 2>&1 \
     && "$tmp/bin/uv" pip install -q --python "$venv/bin/python" -r "$reqs" \
     && "$tmp/bin/uv" pip install -q --python "$venv/bin/python" --no-deps "$silero"; then
    ok=0
  else
    echo "setup: uv unavailable or failed; installing with pip" >&2
  fi
  rm -rf "$tmp"
  return $ok
}
stamp=$venv/.requirements.sha256
want=$(sha256sum "$reqs" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing $reqs into $venv (first time: a few minutes for the full profile, under a minute for the runtime)" >&2
  # only the wheel's silero_vad.onnx is used by the runtime: installed without its declared torch dependency
  silero=$(grep -E '^silero-vad==' requirements.txt)
  if [ "$PROFILE" = runtime ] && runtime_with_uv "$venv" "$reqs" "$silero"; then
    :
  else
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$reqs"
    if [ "$PROFILE" = runtime ]; then
      "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps "$silero"
    fi
  fi
  echo "$want" > "$stamp"
fi
