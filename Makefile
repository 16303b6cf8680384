# The two commands of the README. Each creates the virtual environment when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kdstudy run

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/trainer_overhead.py
	$(BIN)/python bench/ray_overhead.py
	$(BIN)/python bench/predictions_layout.py
	$(BIN)/python bench/driver_scale.py
	$(BIN)/python bench/fidelity.py
	$(BIN)/python bench/study_cost.py

clean:
	rm -rf $(VENV) runs .pytest_cache
