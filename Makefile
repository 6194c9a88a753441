# latent-atlas: two commands do all the set-up on a fresh machine.
#   make run   - set up, then run the whole pipeline on the default config (config/config.yaml)
#   make test  - set up, then run the test suite
#   make test-fast - the unit tests alone (no end-to-end Snakemake runs, no SLURM cluster), ~4 min
#   make test-slurm - the test config through a real one-node SLURM cluster, compared byte for byte
#                     with a local run (determinism, and SLURM = local); ~12 min, CI runs it too
#   (make test: 8.5-16 min of pytest here by load; 856 tests in 630-983 s from a clean clone, 2026-12-04)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= all
SNAKEMAKE_ARGS ?=

.PHONY: run test test-fast test-slurm venv data system-deps lint benchmark report gallery clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Data the default config needs: Debian's Fashion-MNIST when we may use apt (root), else the
# torchvision download path in the config's README.
data:
	@bash scripts/install-data.sh

# System packages the tests drive for real (headless Chromium, a one-node SLURM cluster).
system-deps:
	@bash scripts/install-system-deps.sh

run: $(STAMP) data
	$(BIN)/snakemake --cores $(CORES) --workflow-profile profiles/local $(SNAKEMAKE_ARGS)

# Everything but the second, SLURM run of the test config (tests marked cluster_run).
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -ra -m "not cluster_run" $(PYTEST_ARGS)

# The session's local run of config/test.yaml and a second clean run through --executor slurm on a
# test cluster, compared file by file (tests marked cluster_run).
test-slurm: $(STAMP) system-deps
	$(BIN)/python -m pytest -ra -m cluster_run $(PYTEST_ARGS)

# Tests marked slow (end-to-end Snakemake runs, whole jobs at scale) or slurm (a real cluster) are
# left out; the browser tests skip where Chromium is missing.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -ra -m "not slow and not slurm" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

report: $(STAMP)
	$(BIN)/snakemake --report report.html $(SNAKEMAKE_ARGS)

# docs/gallery/*.png from a results tree (RESULTS, default results/; the default config's run, plus
# config/examples/fsdd.yaml's for the spoken-digit figures).
RESULTS ?= results
gallery: $(STAMP)
	$(BIN)/python scripts/make_gallery.py $(foreach r,$(RESULTS),--results $(r))

benchmark: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf results/* .snakemake report.html
	touch results/.gitkeep
