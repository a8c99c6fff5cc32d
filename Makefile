# Two commands on a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
CORES  ?= all

# The venv's tools come first on PATH so every Snakemake job runs the venv's python.
export PATH := $(BIN):$(PATH)

.PHONY: run test test-fast install clean dry-run report dvc-yaml

install: $(STAMP)

# torch and torchvision are pinned as a matching pair; a looser range pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html
	$(BIN)/python -m pipeline_src summary

# The HTML report of the last run (tables, figures, captions from workflow/report/).
report: $(STAMP)
	$(BIN)/snakemake --report results/report.html

dry-run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) -n

test: $(STAMP)
	$(BIN)/python -m pytest

# The edit-test loop: unit tests and the smoke workflow, without the SLURM cluster, the browser, the
# determinism re-run and the DVC/named-run end-to-end runs (`heavy`), which `make test` keeps.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not heavy"

# dvc.yaml after a change of tables, rows, seeds, datasets or attacks (never needed for a value change)
dvc-yaml: $(STAMP)
	$(BIN)/python -m pipeline_src dvc-yaml

clean:
	rm -rf data/prepared data/adversarial models logs .snakemake .tracking runs
	find results/metrics -mindepth 1 -maxdepth 1 ! -name tables -exec rm -rf {} +
