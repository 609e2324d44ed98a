#!/usr/bin/env bash
# Create (or reuse) the isolated onnx2tf venv used by converters.TFLiteFromOnnx(backend="onnx2tf").
#
#   bash converters/envs/setup_onnx2tf.sh            # -> .venvs/onnx2tf
#   ONNX2TF_VENV=/opt/onnx2tf PYTHON=python3.11 bash converters/envs/setup_onnx2tf.sh
#
# Idempotent: a stamp file holds the sha256 of the requirements file; when it matches,
# nothing is reinstalled. Delete the stamp (or the venv) to force a rebuild.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${ONNX2TF_VENV:-$repo/.venvs/onnx2tf}"
reqs="$here/requirements-onnx2tf.txt"
stamp="$venv/.latencylab-onnx2tf.stamp"
python_bin="${PYTHON:-python3.11}"

if ! command -v "$python_bin" >/dev/null 2>&1; then
  python_bin="$repo/.venv/bin/python"
fi

want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
  echo "onnx2tf venv up to date: $venv"
  exit 0
fi

echo "creating onnx2tf venv at $venv with $python_bin"
"$python_bin" -m venv "$venv"
# onnx2tf pins every dependency itself; install them exactly, then check the import.
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -r "$reqs"
"$venv/bin/python" -c "import onnx2tf, tensorflow as tf; print('onnx2tf', onnx2tf.__version__, 'tf', tf.__version__)"
echo "$want" >"$stamp"
echo "onnx2tf venv ready: $venv"
