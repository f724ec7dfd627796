# The front door: `make serve` and `make test` work on a machine with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := src tests $(wildcard benchmarks)

.PHONY: serve test aws-rehearsal deps lint format bench soak clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

serve: $(STAMP)
	$(BIN)/nodecert serve

# nginx for the node-side recipe tests (tests/integration/test_nginx.py), systemd-analyze
# for the shipped units (tests/integration/test_systemd_units.py) and the
# PostgreSQL server binaries for the PostgreSQL store tests. Installed only as root (CI
# containers); elsewhere a hint is printed and those tests skip. The tests start a cluster
# of their own (temporary data directory, free port); the one the Debian package may
# create and start (main, port 5432) is neither used nor touched.
deps:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; \
		else \
			echo "hint: install nginx (apt-get install nginx-light) to run the nginx tests"; \
		fi; }
	@command -v systemd-analyze >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd; \
		else \
			echo "hint: install systemd (apt-get install systemd) to verify deploy/systemd"; \
		fi; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
		else \
			echo "hint: install PostgreSQL (apt-get install postgresql) to run the PostgreSQL tests"; \
		fi; }

test: $(STAMP) deps
	$(BIN)/python -m pytest -q -p no:cacheprovider --cov=nodecert --cov-report=term:skip-covered $(PYTEST_ARGS)

# The AWS system of deploy/template.yaml end to end on one machine (docs/aws.md): moto for
# Cognito, ACM PCA, DynamoDB and S3, API Gateway emulated from the SAM-translated template,
# a real mutual-TLS listener for the custom domain. `make test` runs it too.
aws-rehearsal: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration/test_aws_rehearsal.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# Ten minutes of mixed load against `nodecert serve` (issue 6): errors, RSS, fds, ledger.
# Not part of `make test`. Shorter: make soak SOAK_ARGS="--minutes 2".
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
