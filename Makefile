# Two entry points: `make demo` (install + run the suite on the demo data) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
# TensorFlow's CPU build unless an NVIDIA GPU is visible
TF_EXTRA ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
BACKBONES ?= mobilenetv2 resnet50
DATASET ?= demo
# test processes (pytest-xdist; a test file stays in one process): 2 for CI's 2 cores
TEST_WORKERS ?= 2

.PHONY: install demo test check lint clean
$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# KerasHub (the vit_b16 backbone) goes in with --no-deps, after the dependencies the ViT uses: KerasHub requires tensorflow-text, which
# requires the full `tensorflow` distribution, a second package writing the same `tensorflow/` folder as tensorflow-cpu. pip then reports
# that keras-hub lacks tensorflow-text (and sentencepiece); nothing here uses them. (`pip install ".[vit]"` is for a full-tensorflow install.)
$(VENV)/.installed: $(BIN)/activate setup.py settings.ini constraints.txt
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[$(TF_EXTRA),dev]"
	$(BIN)/pip install -q -c constraints.txt regex tokenizers kagglehub kagglesdk
	$(BIN)/pip install -q -c constraints.txt --no-deps keras-hub || echo 'note: KerasHub (the vit_b16 backbone) is not installed: it needs Python >= 3.11'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/deepfake-nb run --dataset $(DATASET) --backbones $(BACKBONES)

test: install
	$(BIN)/python -m pytest -ra --durations=25 -n $(TEST_WORKERS) --dist loadfile tests

check: install
	bash .ci/check_sync

# ruff (ruff.toml): the package and the notebooks, 120 columns, no `;`-joined statements in library code
lint: install
	$(BIN)/ruff check

clean:
	rm -rf $(VENV) data/raw data/manifests data/faces data/features reports/runs reports/compare reports/report.*
