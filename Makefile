# The front door: `make serve` and `make test` work on a machine with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := src tests $(wildcard benchmarks)

.PHONY: serve test test-latest lock aws-rehearsal deps lint format bench soak clean

# Installs come from the locks in requirements/ (exact versions with hashes, made by
# `make lock`), never from whatever was released last night. `make serve` installs the service
# set only; `make test` and the other developer targets the development set.
PIP := $(BIN)/python -m pip install --quiet --require-hashes --no-deps
EDITABLE := $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .

$(VENV)/.service: requirements/service.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements/service.txt
	$(EDITABLE)
	@touch $@

$(STAMP): requirements/dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements/dev.txt
	$(EDITABLE)
	@touch $@ $(VENV)/.service

serve: $(VENV)/.service
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
	@command -v softhsm2-util >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2; \
		else \
			echo "hint: install SoftHSM2 (apt-get install softhsm2) to run the PKCS#11 tests"; \
		fi; }

test: $(STAMP) deps
	$(BIN)/python -m pytest -q -p no:cacheprovider --cov=nodecert --cov-report=term:skip-covered $(PYTEST_ARGS)

# Refresh the locks on purpose (then `make test` and commit them): each set is compiled
# against the development lock, so one version of each package runs everywhere. The Lambda
# set is resolved for the Lambda runtime's Python (3.12).
LOCK := $(BIN)/uv  pip compile --quiet --universal --generate-hashes --custom-compile-command "make lock"
lock: $(STAMP)
	$(LOCK) --python-version 3.11 --upgrade pyproject.toml requirements/build.in --extra dev -o requirements/dev.txt
	$(LOCK) --python-version 3.11 pyproject.toml requirements/build.in --extra server -c requirements/dev.txt -o requirements/service.txt
	$(LOCK) --python-version 3.11 pyproject.toml -c requirements/dev.txt -o requirements/node.txt
	$(LOCK) --python-version 3.12 pyproject.toml --extra aws -c requirements/dev.txt -o requirements/lambda.txt

# The suite against the newest releases of everything pyproject admits, in a venv of its own:
# drift found on a day we choose, not by a red CI. Never used by `make test` or CI.
test-latest:
	@test -x .venv-latest/bin/python || $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade -e '.[dev]'
	.venv-latest/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

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
	rm -rf $(VENV) .venv-latest .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
