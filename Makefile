# Two commands matter: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The instance folder (database, secret key, outbox): NURTURE_INSTANCE_PATH when set, as for every command.
INSTANCE := $(or $(NURTURE_INSTANCE_PATH),instance)
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint bench clean venv chromium

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("nurture needs Python 3.11+") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(INSTANCE)/secret_key:
	mkdir -p $(INSTANCE)
	$(PYTHON) -c 'import secrets; print(secrets.token_hex(32))' > $@
	chmod 600 $@

run: $(STAMP) $(INSTANCE)/secret_key
	NURTURE_SECRET_KEY=$$(cat $(INSTANCE)/secret_key) $(BIN)/nurture db upgrade
	NURTURE_SECRET_KEY=$$(cat $(INSTANCE)/secret_key) $(BIN)/nurture demo load --if-empty
	NURTURE_SECRET_KEY=$$(cat $(INSTANCE)/secret_key) $(BIN)/nurture run --host $(HOST) --port $(PORT)

# Browser tests drive Debian's Chromium; install it when missing (root, or sudo, on Debian/Ubuntu).
CHROMIUM := $(shell command -v chromium || command -v chromium-browser)
chromium:
ifeq ($(CHROMIUM),)
	@command -v apt-get >/dev/null || { echo "Install Chromium for the browser tests (Debian package: chromium)"; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq || true
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium
endif

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
