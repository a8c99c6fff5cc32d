# Two commands on a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
CORES  ?= all
LOCK   := requirements.lock
# pip-tools lives in its own throwaway venv: the tool that writes the lock is not part of what it locks
LOCK_VENV := .venv-lock

# The venv's tools come first on PATH so every Snakemake job runs the venv's python.
export PATH := $(BIN):$(PATH)

.PHONY: run audit test test-fast install clean dry-run report dvc-yaml lock

install: $(STAMP)

# Everything from the lock (exact versions, hash-checked; docs/environment.md), then this project itself
# without dependencies, built with the lock's setuptools (no build isolation: nothing unpinned is fetched).
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Re-resolve pyproject.toml (+ the test and kubernetes extras) into the lock, keeping today's pins where they still fit;
# `make lock UPGRADE=1` moves every package to its newest allowed version. Commit the result.
lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet "pip-tools>=7.4,<8"
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
		--strip-extras --extra test --extra kubernetes --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) \
		--output-file $(LOCK) pyproject.toml
	$(PYTHON) pipeline_src/envlock.py header $(LOCK)

# the headline (NA against the best defended row, in words) comes last, from `summary`
run: $(STAMP)
	PIPELINE_SUMMARY_FOLLOWS=1 $(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html
	$(BIN)/python -m pipeline_src summary

# Beyond the paper, after `make run`: strong and ensemble transfer, Square Attack, AutoAttack and sanity checks
# on every classifier of Tables 1-3 (docs/audit.md; about 45 minutes on 2 cores, so not part of `make run`)
audit: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) audit
	$(BIN)/snakemake --report results/report.html all audit
	$(BIN)/python -m pipeline_src summary --audit

# The HTML report of the last run (tables, figures, captions from workflow/report/); `make audit` rebuilds it
# with the audit's tables and figures.
report: $(STAMP)
	$(BIN)/snakemake --report results/report.html

dry-run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) -n

# The suite on every core (pytest-xdist): tests that share a run or a module's fixture stay on one worker, the
# longest start first (tests/xdist_groups.py). `make test PYTEST_WORKERS=0` runs it in one process.
# Workers: the CPUs this process may use (nproc; xdist's `auto` counts the host's physical cores, which a
# container or a hyperthreaded VM misreports), at most 4: past that the two long units (the smoke run's tests,
# the DVC repository's) set the time.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test: $(STAMP)
	$(PYTEST)

# The edit-test loop: unit tests and the smoke workflow, without the SLURM cluster, the browser, the
# determinism re-run and the DVC/named-run end-to-end runs (`heavy`), which `make test` keeps.
test-fast: $(STAMP)
	$(PYTEST) -m "not heavy"

# dvc.yaml after a change of tables, rows, seeds, datasets or attacks (never needed for a value change)
dvc-yaml: $(STAMP)
	$(BIN)/python -m pipeline_src dvc-yaml

clean:
	rm -rf data/prepared data/adversarial models logs benchmarks .snakemake .tracking runs
	[ ! -d results/metrics ] || find results/metrics -mindepth 1 -maxdepth 1 ! -name tables -exec rm -rf {} +
