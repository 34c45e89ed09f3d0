# Every target works on a fresh machine: it creates .venv and installs what it needs first.
PY      ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test bench bench-data bench-train bench-fashion bench-report bench-noisy bench-ensemble bench-letters \
        bench-leakage bench-demo bench-cnn bench-long-tail bench-augment bench-tasks bench-near-dup bench-fixed bench-gpu figures figures-check \
        fashion-mnist chromium postgresql clean

# the demo needs podium alone; the tests add their tools (pytest, import-linter, ruff, MLflow, ...)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test]'
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/podium demo

test: $(TEST_STAMP) chromium postgresql
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check --no-cache src tests benchmarks
	$(BIN)/python -m pytest -x --timeout=900

# Debian's Chromium: the report tests open `podium report`'s page headless and take a screenshot.
chromium:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Debian's PostgreSQL: the `podium tune` tests start a server of their own (initdb + pg_ctl in a temp folder).
postgresql:
	command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
	  || (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)

# Debian's Fashion-MNIST (70,000 images) for the benchmarks that need real data.
fashion-mnist:
	test -d /usr/share/datasets/fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
	  || (sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist)

# Every benchmark (hours on 2 CPU cores; each writes benchmarks/results/<name>.json with its provenance), then the
# tables in README.md and docs/*.md are rendered again from the new results. Run them one at a time (no -j): they
# time themselves. bench-gpu needs a GPU and is not part of `bench`.
bench: bench-demo bench-data bench-train bench-fashion bench-cnn bench-report bench-noisy bench-augment bench-ensemble \
       bench-long-tail bench-tasks bench-letters bench-leakage bench-near-dup bench-fixed
	$(MAKE) figures

# Rewrite every <!-- figures:NAME --> block of README.md and docs/*.md from benchmarks/results; stale results are
# listed as warnings. figures-check changes nothing and fails when a block differs (what the tests check).
figures:  # figures.py needs the standard library only: no venv
	$(PY) benchmarks/figures.py

figures-check:
	$(PY) benchmarks/figures.py --check

bench-data: $(STAMP)
	$(BIN)/python benchmarks/data_loading.py

bench-train: $(STAMP)
	$(BIN)/python benchmarks/train_overhead.py

bench-fashion: $(STAMP) fashion-mnist
	$(BIN)/python benchmarks/fashion_mnist.py

bench-report: $(STAMP) fashion-mnist
	$(BIN)/python benchmarks/report_speed.py

bench-noisy: $(STAMP) fashion-mnist
	$(BIN)/python benchmarks/noisy_test.py

bench-ensemble: $(STAMP) fashion-mnist
	$(BIN)/python benchmarks/ensemble.py --threads 1

bench-letters: $(STAMP)
	$(BIN)/python benchmarks/letters.py
	$(BIN)/python benchmarks/letters.py --epochs 10 --lr 2e-3 --out benchmarks/results/letters-e10.json

bench-leakage: $(STAMP)
	$(BIN)/python benchmarks/leakage.py

bench-cnn: $(STAMP) fashion-mnist
	$(BIN)/python benchmarks/podium_cnn.py --model podium_cnn --epochs 8 --drop-rates 0.0,0.2

bench-long-tail: $(STAMP) fashion-mnist
	$(BIN)/python benchmarks/long_tail.py

bench-augment: $(STAMP)
	$(BIN)/python benchmarks/augment_speed.py --steps 12 --rounds 2

bench-tasks: $(STAMP)
	$(BIN)/python benchmarks/tasks.py --parts multilabel --epochs 12
	$(BIN)/python benchmarks/tasks.py --parts multitask --people 40 --epochs 40

bench-near-dup: $(STAMP) fashion-mnist
	$(BIN)/python benchmarks/near_duplicates.py

bench-fixed: $(STAMP)
	$(BIN)/python benchmarks/fixed_costs.py --repeat 3

bench-demo: $(STAMP)
	$(BIN)/python benchmarks/demo.py

bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/gpu.py

clean:
	rm -rf $(VENV)
