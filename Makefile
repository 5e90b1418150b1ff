# The README's two commands: `make demo` (the main job) and `make test`.
# Both bootstrap a .venv with everything they need; `make test` also installs
# the Debian libraries sqlite-vss needs when run as root (CI), after apt-get update.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= all
DEMO   ?= memkit-demo

.PHONY: venv system-deps test lint demo wheel clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

venv: $(BIN)/.installed

system-deps:
	bash scripts/system-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: system-deps venv lint
	$(BIN)/pytest
	$(BIN)/pytest --nbmake notebooks/

demo: venv
	$(BIN)/memkit demo --output $(DEMO)

wheel: venv
	$(BIN)/python -m pip wheel --no-deps -w dist .

clean:
	rm -rf $(VENV) dist build $(DEMO) .pytest_cache .mypy_cache .ruff_cache
