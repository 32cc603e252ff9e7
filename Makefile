# The two commands a fresh machine needs:  make book  and  make test.  Both set up .venv and the system
# pieces they need themselves (tools/system_setup.py: an OpenGL library only if no backend renders, and
# Chromium for the browser check of make test; installed with apt-get as root on Debian, else explained).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_SYSTEM ?= python3
VENV          ?= .venv
PY            := $(VENV)/bin/python
STAMP         := $(VENV)/.installed
# Torch first, exactly: a bare `torch` requirement with nothing installed pulls a multi-GB CUDA build on a
# CPU-only machine; on a machine with a GPU the same pin gets the CUDA build.
TORCH_PIN     ?= torch==2.13.0
JOBS          ?= 2
BUILD_TEST    := _build/test
# Book builds: execution errors must fail the build (-W), nitpicky references (-n), report all (--keep-going).
JB_FLAGS      := -W -n --keep-going

export PYTHONHASHSEED := 0
# No MUJOCO_GL here: meta_rl_lessons.gl chooses the backend that renders on this machine (a user's
# MUJOCO_GL is respected).

.PHONY: help setup system-book system-test book test lint notebooks-clean unit nbval book-smoke browser serve bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv, install the package and its extras, and the system pieces (idempotent)
	$(PY) tools/system_setup.py

system-book: $(STAMP)
	$(PY) tools/system_setup.py --no-browser

system-test: $(STAMP)
	$(PY) tools/system_setup.py --require-browser

$(STAMP): pyproject.toml setup.py environment.yml tools/pins.py
	@test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) tools/pins.py environment.yml > $(VENV)/constraints.txt
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -c $(VENV)/constraints.txt -e ".[book,test,distributed]"
	# MuJoCo Warp where it installs (its tests skip, saying why, where it does not)
	$(PY) -m pip install --quiet -c $(VENV)/constraints.txt -e ".[warp]" || \
		echo "make setup: the [warp] extra (MuJoCo Warp) did not install here; tests/test_envs_warp.py skips"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (meta-rl-lessons)"
	@touch $@

book: system-book  ## execute every chapter at the `book` budget (cached) and build the HTML into _build/html
	$(PY) tools/book_cache.py _build
	rm -rf _build/html _build/.doctrees  # no stale pages from removed chapters; execution stays cached
	# The chapters run single-threaded: execute them JOBS at a time into the build's cache first.
	META_RL_BUDGET=$${META_RL_BUDGET:-book} $(PY) tools/execute_parallel.py --cache _build/.jupyter_cache \
		--jobs $(JOBS) chapters/*.ipynb
	META_RL_BUDGET=$${META_RL_BUDGET:-book} $(VENV)/bin/jupyter-book build . $(JB_FLAGS)
	@echo "Built: _build/html/index.html"

serve: book  ## serve the built book on http://127.0.0.1:8000
	$(PY) -m http.server --directory _build/html --bind 127.0.0.1 8000

lint: $(STAMP)  ## ruff on the package, tests, tools, bench and notebooks
	$(VENV)/bin/ruff check meta_rl_lessons tests tools bench chapters

notebooks-clean: $(STAMP)  ## fail if a committed notebook carries outputs
	$(PY) tools/check_notebooks.py chapters

book-smoke: system-book  ## build the book at the smoke budget into _build/test (what make test checks)
	$(PY) tools/book_cache.py $(BUILD_TEST)/_build
	rm -rf $(BUILD_TEST)/_build/html $(BUILD_TEST)/_build/.doctrees
	META_RL_BUDGET=smoke $(PY) tools/execute_parallel.py --cache $(BUILD_TEST)/_build/.jupyter_cache \
		--jobs $(JOBS) chapters/*.ipynb
	META_RL_BUDGET=smoke $(VENV)/bin/jupyter-book build . --path-output $(BUILD_TEST) $(JB_FLAGS)

test: system-test lint notebooks-clean book-smoke  ## ruff, no-outputs check, smoke book build, then one pytest run: unit tests, nbval, browser check
	META_RL_BUDGET=smoke META_RL_SITE=$(BUILD_TEST)/_build/html $(VENV)/bin/pytest -n $(JOBS) --dist loadscope \
		tests chapters --nbval-lax --nbval-current-env

bench: $(STAMP)  ## run every benchmark script in bench/ (prints figures; slow)
	$(PY) -m pip install --quiet -c $(VENV)/constraints.txt -e ".[bench]"
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f; done

clean:  ## remove build outputs and caches (keeps .venv)
	rm -rf _build .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
