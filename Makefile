# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck unit schema migrations screenshots vendor bench bench-send bench-usage bench-fanout bench-load bench-import bench-spend clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Tally needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	$(BIN)/pip install --quiet --constraint constraints.txt --editable ".[dev]"
	touch $(STAMP)

install: $(STAMP)

HOST ?= 127.0.0.1
PORT ?= 8000

# Take the port (a port in use stops here, before anything else), migrate, seed the demo
# account when the database is empty, print tokens and a link that signs in to the
# dashboard, serve. `make run PORT=8001 HOST=0.0.0.0` changes where it listens.
run: install
	$(BIN)/tally serve --host $(HOST) --port $(PORT) --seed-demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

test: lint typecheck unit

# Write the committed schema.graphql from the code.
schema: install
	$(BIN)/tally export-schema > schema.graphql

# The README's pictures of the dashboard: docs/screenshot-{analytics,billing}.png, from a
# fresh demo account in Debian's chromium (apt-get install chromium).
screenshots: install
	$(BIN)/python scripts/screenshots.py

# Refresh the npm packages under api/assets/vendor/ (needs Node's npm; run and test do not).
vendor:
	$(PYTHON) scripts/vendor.py

# After a model change: write the next migration into models/migrations/.
migrations: install
	mkdir -p var
	TALLY_DATABASE_URL=sqlite://$(CURDIR)/var/makemigrations.db $(BIN)/tortoise -c models.tortoise_cli.TORTOISE_ORM migrate
	TALLY_DATABASE_URL=sqlite://$(CURDIR)/var/makemigrations.db $(BIN)/tortoise -c models.tortoise_cli.TORTOISE_ORM makemigrations

# Benchmarks: modules of bench/ run from the repository root, on fresh temporary databases,
# loopback only. Each prints its goals as PASS/MISS lines and exits 1 on any failed request;
# pass options with ARGS="...". How to run and read them: docs/benchmarks.md.
ARGS ?=

# sendMessage over HTTP (SQLite, one process) against the service layer, the raw and batched
# Starlette + aiosqlite floors, and `tally serve --workers 2` on PostgreSQL; about 2 minutes.
bench-send: install
	$(BIN)/python -m bench.send $(ARGS)

# Usage reports: Account.usage over HTTP against a plain GROUP BY, 1,000,000 seeded messages,
# on SQLite and (when it answers at 127.0.0.1:5432) PostgreSQL; about 2.5 minutes.
bench-usage: install
	$(BIN)/python -m bench.usage $(ARGS)

# Live balances: 1,000 websocket subscribers of one account, a change every 100 ms, on one
# process (SQLite) and on 4 workers (PostgreSQL + Redis at 127.0.0.1); about 2 minutes.
# A 150 s soak of the server's memory: ARGS="--phases single,workers,soak".
bench-fanout: install
	$(BIN)/python -m bench.fanout $(ARGS)

# Load test: one account's SPA traffic (sends, queries, webhooks, 26 subscribers, a runaway
# token) at 5x its expected rate for 60 s, on SQLite and on 2 workers with PostgreSQL + Redis;
# checks every ledger entry after; about 3 minutes.
bench-load: install
	$(BIN)/python -m bench.load $(ARGS)

# Spend control's cost per send (alerts, a budget, an endpoint) and notice latency, about
# 2.5 minutes. Results and how to read them: docs/benchmarks.md ("Spend control").
bench-spend: install
	$(BIN)/python -m bench.spend

# History import: `tally import-messages` of 100,000 and 1,000,000 JSON lines, wall time and
# peak RSS, on SQLite and (when it answers at 127.0.0.1:5432) PostgreSQL; about 3 minutes.
bench-import: install
	$(BIN)/python -m bench.importing $(ARGS)

bench: bench-send bench-usage bench-fanout bench-load bench-import bench-spend

clean:
	rm -rf $(VENV) var
