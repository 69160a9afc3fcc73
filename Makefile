# facecore developer entry points. Everything starts from a bare machine with
# python3 and a C++ compiler: `make test` creates .venv, installs the pinned
# dependencies, builds the extension and runs the tests. Stamps in .venv make
# a second run fast.
#
#   make test        unit tests (what CI runs)
#   make demo        the main job
#   make demo-privacy  a semi-adversarial privacy network on synthetic faces (grid + report;
#                    ~10 min on 2 cores)
#   make bench       benchmarks (pytest-benchmark)
#   make cuda-check  compile the CUDA kernels (torch 2.14.1 + CUDA 13) and
#                    check every op has a CUDA kernel; no GPU needed
#   make lint        ruff
#   make clean       remove build outputs (keeps the venvs)

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
CONSTRAINTS := .ci/constraints.txt
PYTEST_ARGS ?=

CUDA_VENV ?= .venv-cuda
CUDA_TORCH_VERSION := 2.14.1
CUDA_HOME ?= /usr/local/cuda
CUDA_ARCHS ?= 8.0;9.0
CUDA_BUILD := build-cuda

# Caches live in the checkout, never in the user's home.
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.cache/torch_extensions
export TORCHINDUCTOR_CACHE_DIR := $(CURDIR)/.cache/inductor
export TRITON_CACHE_DIR := $(CURDIR)/.cache/triton
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONDONTWRITEBYTECODE := 1

SOURCES := setup.py $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')
# The dependencies named in pyproject.toml (runtime + the extras we develop with).
DEPS_CMD := import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	o = p['optional-dependencies']; \
	print(' '.join(p['dependencies'] + o['test'] + o['ray'] + o['plot'] + o['detect'] + o['analysis']))

.PHONY: all venv deps build test bench demo demo-privacy cuda-check lint clean

all: test

$(VENV)/.stamp-venv:
	$(PYTHON) -m venv $(VENV)
	@touch $@

$(VENV)/.stamp-deps: $(VENV)/.stamp-venv $(CONSTRAINTS) pyproject.toml
	$(PIP) install -q -c $(CONSTRAINTS) --upgrade pip setuptools wheel
	$(PIP) install -q -c $(CONSTRAINTS) torch==$(TORCH_VERSION) ninja pybind11 numpy
	$(PIP) install -q -c $(CONSTRAINTS) $$($(PY) -c "$(DEPS_CMD)") ruff
	@touch $@

$(VENV)/.stamp-build: $(VENV)/.stamp-deps $(SOURCES)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	@touch $@

venv: $(VENV)/.stamp-venv
deps: $(VENV)/.stamp-deps
build: $(VENV)/.stamp-build

test: build
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: build
	$(PY) -m pytest benchmarks -o python_files='bench_*.py' -o python_functions='test_* bench_*' --benchmark-only \
		--benchmark-columns=min,median,mean,rounds --benchmark-sort=name $(PYTEST_ARGS)

demo: build
	$(PY) -m facecore.demo

demo-privacy: build
	$(PY) -m facecore.cli train --config san_demo --storage runs && ls runs/san-demo/privacy

lint: deps
	$(PY) -m ruff check facecore tests benchmarks tune setup.py

# The CUDA kernels are compiled in a copy of the sources so that the CPU build
# in facecore/ (and its recorded torch version) is left alone.
# (importing facecore needs numpy and pillow besides torch)
$(CUDA_VENV)/.stamp-deps: Makefile
	$(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -m pip install -q --upgrade pip
	$(CUDA_VENV)/bin/python -m pip install -q torch==$(CUDA_TORCH_VERSION) numpy pillow ninja setuptools wheel pybind11
	@touch $@

cuda-check: $(CUDA_VENV)/.stamp-deps
	rm -rf $(CUDA_BUILD)/src && mkdir -p $(CUDA_BUILD)/src
	cp -r setup.py pyproject.toml README.md csrc facecore $(CUDA_BUILD)/src/
	rm -f $(CUDA_BUILD)/src/facecore/_C*.so $(CUDA_BUILD)/src/facecore/_build_info.py
	cd $(CUDA_BUILD)/src && CUDA_HOME=$(CUDA_HOME) FACECORE_FORCE_CUDA=1 \
		TORCH_CUDA_ARCH_LIST="$(CUDA_ARCHS)" MAX_JOBS=2 \
		$(abspath $(CUDA_VENV))/bin/python setup.py -q build_ext --inplace
	PYTHONPATH=$(CURDIR)/$(CUDA_BUILD)/src $(abspath $(CUDA_VENV))/bin/python .ci/cuda_check.py \
		--archs "$(CUDA_ARCHS)"

clean:
	rm -rf build $(CUDA_BUILD) facecore/_C*.so facecore/_build_info.py *.egg-info .cache
