# Every target works on a fresh machine: it creates .venv and installs what it needs first.
PY      ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test bench bench-data bench-train bench-fashion bench-report bench-noisy bench-ensemble bench-letters \
        bench-leakage fashion-mnist chromium clean

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

test: $(TEST_STAMP) chromium
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -x --timeout=900

# Debian's Chromium: the report tests open `podium report`'s page headless and take a screenshot.
chromium:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Debian's Fashion-MNIST (70,000 images) for the benchmarks that need real data.
fashion-mnist:
	test -d /usr/share/datasets/fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
	  || (sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist)

bench: bench-data bench-train bench-fashion bench-report bench-noisy bench-ensemble bench-letters bench-leakage

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

bench-leakage: $(STAMP)
	$(BIN)/python benchmarks/leakage.py

clean:
	rm -rf $(VENV)
