# Every target works on a fresh machine: it creates .venv and installs what it needs first.
PY      ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test bench bench-data bench-train bench-fashion fashion-mnist clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/podium demo

test: $(STAMP)
	$(BIN)/python -m pytest -x --timeout=900

# Debian's Fashion-MNIST (70,000 images) for the benchmarks that need real data.
fashion-mnist:
	test -d /usr/share/datasets/fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
	  || (sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist)

bench: bench-data bench-train bench-fashion

bench-data: $(STAMP)
	$(BIN)/python benchmarks/data_loading.py

bench-train: $(STAMP)
	$(BIN)/python benchmarks/train_overhead.py

bench-fashion: $(STAMP) fashion-mnist
	$(BIN)/python benchmarks/fashion_mnist.py

clean:
	rm -rf $(VENV)
