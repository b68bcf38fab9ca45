# Two commands on a fresh machine (Python 3.11, Java 17, Maven):
#   make run    the main job: embedded Kafka + the pipeline with sample traffic
#   make test   every test, against a real Kafka broker the project starts itself
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean native browser assets

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools' note on every editable install (folders named like a package may shadow it) does not apply:
	@# the packages are found through the install, and the compiled build never shadows them (schemas/native.py)
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# the hot path compiled with mypyc (eventrouter/dev/native.py); a no-op while the build is current, and
# plain Python (same behaviour, more CPU) when it cannot be built
native: $(STAMP)
	@$(BIN)/python -m eventrouter.dev.native

run: native
	$(BIN)/eventrouter demo

test: native browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the console's browser test runs Debian's chromium and chromium-driver (a browser that downloads itself
# is not used); installed here once, as root or with sudo
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian's chromium and chromium-driver for the console's browser test"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

# the console's htmx and CodeMirror, pinned in eventrouter/console/assets/package.json: rebuilt and copied into
# eventrouter/console/static/vendor/ with their licences (needs Node and npm; the output is committed, so
# run, test and the package never need them)
assets: $(STAMP)
	$(BIN)/python -m eventrouter.dev.assets

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/mypy

bench: native
	$(BIN)/python -m bench.avro_representation
	$(BIN)/python -m bench.sdk
	$(BIN)/python -m bench.gateway
	$(BIN)/python -m bench.worker
	$(BIN)/python -m bench.forwarder
	$(BIN)/python -m bench.chain
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.console_pipeline
	$(BIN)/python -m bench.console_live

clean:
	rm -rf $(VENV) .eventrouter .pytest_cache .mypy_cache .ruff_cache
