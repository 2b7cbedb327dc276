# mixprobe: `make demo` (set up + run the demo) and `make test` (set up + run the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mixprobe-installed

.PHONY: setup demo test bench clean

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

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/capture.py && $(PY) benchmarks/probes.py && $(PY) benchmarks/patching.py

clean:
	rm -rf $(VENV) runs
