# The two commands of the README. Each creates .venv if missing and installs the pinned
# requirements (skipped when they have not changed since the last install); requirements-nodeps.txt
# goes in with --no-deps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
QUICK ?=
# Test processes: two cores run the suite in about half the wall time of one (pytest-xdist;
# a test module stays in one process, so its module fixtures are built once).
TEST_WORKERS ?= 2

.PHONY: demo test bench bench-whole-run clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt requirements-test.txt requirements-nodeps.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m launch.demo

test: $(STAMP)
	$(PY) -m pytest tests -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=15

bench: $(STAMP)
	$(PY) -m benchmarks.pgd_at $(if $(QUICK),--quick,)
	$(PY) -m benchmarks.serving $(if $(QUICK),--rounds 3 --train-rounds 1,)
	$(PY) -m benchmarks.conv_ops $(if $(QUICK),--repeats 20,--repeats 40)

# Issue 26: a whole run's wall time, dense against fb_plus_channel_fast (benchmarks/whole_run.py;
# BENCHMARKS.md has the other configurations' commands). Not in `bench`: about an hour on a Zen 4
# core, two on an AVX2-only one (BENCHMARKS.md).
FAST_GIN = gin/beyond_paper/fb_plus_channel_fast_resnet18.gin
bench-whole-run: $(STAMP)
	$(PY) -m benchmarks.whole_run --shape=cifar --seeds=2 --epochs=6 --sparse_gin=$(FAST_GIN) --out=results/bench/whole_run_cifar_fast_6ep.json
	$(PY) -m benchmarks.whole_run --shape=cifar --seeds=2 --epochs=12 --sparse_gin=$(FAST_GIN) --out=results/bench/whole_run_cifar_fast_12ep.json
	$(PY) -m benchmarks.whole_run --shape=offline --seeds=2 --sparse_gin=$(FAST_GIN) --out=results/bench/whole_run_offline_fast.json

clean-venv:
	rm -rf $(VENV)
