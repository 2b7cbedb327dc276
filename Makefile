# mixprobe: `make demo` (set up + run the demo) and `make test` (set up + run the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mixprobe-installed

.PHONY: setup demo test lint bench browser clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# CPU-only machine: install the CPU torch wheel first so no multi-GB CUDA build is pulled.
	@# A machine with an NVIDIA GPU keeps (or gets) its CUDA torch from the range in pyproject.toml.
	if ! $(PY) -c "import torch" 2>/dev/null && ! command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip check
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/mixprobe demo --out runs/demo --seed 0 --rl-tag A --overwrite

test: $(STAMP) browser lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider --durations=25

# ruff (pyflakes, pycodestyle, bugbear, pyupgrade) and mypy, configured in pyproject.toml; part of `make test`.
lint: $(STAMP)
	$(PY) -m ruff check mixprobe tests benchmarks experiments docs notebooks/build.py
	$(PY) -m mypy

# Headless Chromium for the report test (Debian package); the test is skipped, with a message, where it cannot be installed.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get -qq update >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get -qq install -y \
		--no-install-recommends chromium fonts-liberation >/dev/null 2>&1; } && command -v chromium >/dev/null 2>&1; } || \
		echo "chromium not installed: the report's browser test will be skipped"

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/capture.py && $(PY) benchmarks/probes.py && $(PY) benchmarks/patching.py && $(PY) benchmarks/import_time.py && $(PY) benchmarks/threads.py && HF_HUB_OFFLINE=1 $(PY) benchmarks/distributed.py && $(PY) benchmarks/checked.py

clean:
	rm -rf $(VENV) runs
