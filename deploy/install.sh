#!/usr/bin/env bash
# The pip steps of `make setup` (Makefile) for one image, with the pyproject extras it names:
#
#   bash deploy/install.sh agent,onnxruntime,tflite,openvino,torch,executorch
#   DRY_RUN=1 bash deploy/install.sh server,s3,convert     # print the commands, run nothing
#
# 1. torch first, at the Makefile's version, from the CPU index (TORCH_INDEX_URL): PyPI's
#    build of the same version pulls the CUDA wheels (constraints.txt pins 2.13.0+cpu);
# 2. the extras under constraints.txt, editable as `make setup` installs them (server/web.py
#    serves web/ from beside the packages; converters find the onnx2tf venv in .venvs/);
# 3. the --no-deps group of the Makefile, the part these extras need: convert -> litert-torch
#    and its pins, executorch -> executorch, dev -> ofa (their declared requirements would downgrade
#    pydantic or pull LLM tooling; see the Makefile and pyproject.toml);
# 4. convert: the onnx2tf venv (converters/envs/setup_onnx2tf.sh).
# An extra pyproject.toml does not declare is refused (pip would only warn and build an image
# without that runtime).
set -euo pipefail

extras="${1:?usage: deploy/install.sh EXTRAS (comma-separated extras of pyproject.toml)}"
python="${PYTHON:-python}"
TORCH_VERSION=2.13.0
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
CONVERT_NODEPS=(litert-torch litert-converter ai-edge-quantizer xdsl lark immutabledict ordered-set)
EXECUTORCH_NODEPS=(executorch)
DEV_NODEPS=(ofa)  # Once-for-All, for the search-adapter tests; its torchvision would not import
# extras whose packages depend on torch (installed first, from the CPU index)
TORCH_EXTRAS=(torch executorch convert)

cd "$(dirname "${BASH_SOURCE[0]}")/.."

run() {
  if [[ -n "${DRY_RUN:-}" ]]; then printf '%s\n' "$*"; else "$@"; fi
}
has() { [[ ",$extras," == *",$1,"* ]]; }

known="$("$python" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]))')"
IFS=, read -r -a wanted <<<"$extras"
for extra in "${wanted[@]}"; do
  if [[ " $known " != *" $extra "* ]]; then
    echo "deploy/install.sh: unknown extra '$extra'; pyproject.toml declares: $known" >&2
    exit 2
  fi
done

for extra in "${TORCH_EXTRAS[@]}"; do
  if has "$extra"; then
    run "$python" -m pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
    break
  fi
done
run "$python" -m pip install -c constraints.txt -e ".[$extras]"
nodeps=()
if has convert; then nodeps+=("${CONVERT_NODEPS[@]}"); fi
if has executorch; then nodeps+=("${EXECUTORCH_NODEPS[@]}"); fi
if has dev; then nodeps+=("${DEV_NODEPS[@]}"); fi
if ((${#nodeps[@]})); then
  run "$python" -m pip install --no-deps -c constraints.txt "${nodeps[@]}"
fi
if has convert; then
  run bash converters/envs/setup_onnx2tf.sh
fi
