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

# Issue 26: a whole run's wall time, dense against fb_plus_channel (benchmarks/whole_run.py). Not
# in `bench`: the offline shape alone is 2 seeds x 2 runs of several minutes each.
bench-whole-run: $(STAMP)
	$(PY) -m benchmarks.whole_run --shape=offline --seeds=2 --out=results/bench/whole_run_offline.json
	$(PY) -m benchmarks.whole_run --shape=cifar --seeds=2 --out=results/bench/whole_run_cifar.json

clean-venv:
	rm -rf $(VENV)
