# The front door: `make serve` and `make test` work on a machine with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := src tests $(wildcard benchmarks)

.PHONY: serve test coverage test-latest lock aws-rehearsal deps lint format bench soak clean

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

# Optional system packages (nginx, systemd-analyze, PostgreSQL) for the tests that run them
# for real: installed as root, waiting for another apt/dpkg's lock; never fails `make test`
# (their tests skip with a hint). See tools/deps.sh.
deps:
	@sh tools/deps.sh

test: $(STAMP) deps
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The same suite with line coverage of src/nodecert reported at the end. Not part of `make
# test` (and so of CI): tracing every line costs about a third of the suite's time.
coverage: $(STAMP) deps
	$(BIN)/python -m pytest -q -p no:cacheprovider --cov=nodecert --cov-report=term:skip-covered $(PYTEST_ARGS)

# Refresh the locks on purpose (then `make test` and commit them): each set is compiled
# against the development lock, so one version of each package runs everywhere. The Lambda
# set is resolved for the Lambda runtime's Python (3.12).
LOCK := $(BIN)/uv  pip compile --quiet --universal --generate-hashes --custom-compile-command "make lock"
lock: $(STAMP)
	$(LOCK) --python-version 3.11 --upgrade pyproject.toml requirements/build.in --extra dev -o requirements/dev.txt
	$(LOCK) --python-version 3.11 pyproject.toml requirements/build.in --extra server -c requirements/dev.txt -o requirements/service.txt
	$(LOCK) --python-version 3.11 pyproject.toml -c requirements/dev.txt -o requirements/node.txt
	$(LOCK) --python-version 3.11 requirements/build.in -c requirements/dev.txt -o requirements/build.txt
	$(LOCK) --python-version 3.12 pyproject.toml --extra aws -c requirements/dev.txt -o requirements/lambda.txt

# The suite against the newest releases of everything pyproject admits, in a venv of its own:
# drift found on a day we choose, not by a red CI. Never used by `make test` or CI.
test-latest:
	@test -x .venv-latest/bin/python || $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade -e '.[dev]'
	.venv-latest/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The AWS system of deploy/template.yaml end to end on one machine (docs/aws.md): moto for
# Cognito, ACM PCA, DynamoDB and S3, API Gateway emulated from the SAM-translated template,
# a real mutual-TLS listener for the custom domain, nginx as the node backend (`make deps`),
# every function from the package deploy/build.sh makes. `make test` runs it too.
aws-rehearsal: $(STAMP) deps
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
