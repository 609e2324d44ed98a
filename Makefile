# LatencyLab: `make run` serves, `make test` tests. Both set up everything they need first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# Runtimes this machine can run (TensorRT needs an NVIDIA host; CoreML predicts only on macOS).
EXTRAS ?= server,s3,agent,onnxruntime,tflite,openvino,coreml,torch,executorch,convert,predict,dev
# litert-torch (PyTorch -> TFLite) and its own pins, installed without their dependency
# resolution (they would downgrade typing-extensions/pydantic); versions in constraints.txt.
# executorch too: its declared requirements pull LLM tooling whose antlr4 pin conflicts with
# the dev extra; what it needs here is the `executorch` extra (pyproject.toml).
# ofa (Once-for-All, for tests/test_search_adapters.py): its declared torchvision would not
# import beside torch 2.13; the search code it is tested for needs neither.
NODEPS := litert-torch litert-converter ai-edge-quantizer xdsl lark immutabledict ordered-set executorch ofa
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile constraints.txt | sha256sum | cut -c1-12)
# Empty by default, so LATENCYLAB_PORT (or 8000) applies; `make run PORT=9000` overrides both.
PORT   ?=
CHROMIUM ?= /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser run test lint fmt typecheck bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: 2.13.0 is the CPU build on local disk; any other version pulls CUDA wheels.
	$(BIN)/python -m pip install -q torch==2.13.0
	# constraints.txt pins the versions tested together (no resolver backtracking on a fresh clone).
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt $(NODEPS)
	# onnx2tf (needs TensorFlow) lives in its own environment, called as a subprocess.
	bash converters/envs/setup_onnx2tf.sh
	@rm -f $(VENV)/.installed-*
	@touch $@

run: setup
	$(BIN)/latencylab serve $(if $(PORT),--port $(PORT))

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy latencylab server

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; } \
	  || { test -z "$$CI" && echo "chromium not installed: browser tests will be skipped"; }

test: setup browser
	$(BIN)/ruff check .
	$(BIN)/mypy latencylab server
	$(BIN)/pytest

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python -m bench.fidelity

clean:
	rm -rf $(VENV) .latencylab .pytest_cache .mypy_cache .ruff_cache
