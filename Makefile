# roampay — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres

VENV ?= .venv
LOCALSTRIPE_VERSION ?= 1.15.10

.PHONY: run test demo lint openapi-lint postgres localstripe monitoring promtool bench chaos soak fuzz fmt clean

## Serve the API on the embedded SQLite default (./data/roampay.db, keys generated there).
run:
	$(CARGO) run --bin roampay -- serve

## Lint, check the monitoring bundle, make sure PostgreSQL is up, then run every test
## (unit, API on SQLite and PostgreSQL).
test: lint openapi-lint monitoring postgres localstripe
	ROAMPAY_TEST_PG_URL=$(PG_URL) ROAMPAY_LOCALSTRIPE_BIN=$(CURDIR)/$(VENV)/bin/localstripe $(CARGO) test --workspace

## The whole story against localstripe on free ports, step by step (docs/quickstart.md).
demo: localstripe
	$(CARGO) build --bin roampay
	ROAMPAY_BIN=$(CURDIR)/target/debug/roampay LOCALSTRIPE_PYTHON=$(CURDIR)/$(VENV)/bin/python scripts/demo.sh

## rustfmt and clippy, warnings are errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## The served OpenAPI description passes Redocly's recommended rules and Spectral's
## `spectral:oas`, and the TypeScript client openapi-typescript generates from it types
## the contract's example bodies under `tsc --strict` (tests/client/examples.ts).
## Versions pinned; npx fetches them once.
REDOCLY ?= @redocly/cli@1.34.20
SPECTRAL ?= @stoplight/spectral-cli@6.15.0
OPENAPI_TS ?= openapi-typescript@7.13.0
TYPESCRIPT ?= typescript@5.9.3
HEY_API ?= @hey-api/openapi-ts@0.85.2
openapi-lint:
	$(CARGO) build --bin roampay
	mkdir -p target/client
	./target/debug/roampay openapi > target/openapi.json
	npx --yes $(REDOCLY) lint target/openapi.json --format=summary
	npx --yes $(SPECTRAL) lint target/openapi.json --ruleset .spectral.yaml --fail-severity warn
	npx --yes $(OPENAPI_TS) target/openapi.json -o target/client/roampay.d.ts
	cd target/client && npx --yes -p $(TYPESCRIPT) -p $(HEY_API) openapi-ts -i ../openapi.json -o hey --silent
	cp tests/client/examples.ts tests/client/hey_api.ts target/client/
	cd target/client && npx --yes -p $(TYPESCRIPT) tsc --strict --noEmit --target es2022 --module es2022 --moduleResolution bundler --lib es2022,dom,dom.iterable examples.ts hey_api.ts hey/index.ts

## The alert rules are valid and fire as their unit tests say (promtool, from Debian's
## `prometheus` package, installed when missing).
monitoring: promtool
	promtool check rules monitoring/alerts.yml
	cd monitoring && promtool test rules alerts.test.yml

promtool:
	@command -v promtool >/dev/null || { \
	  echo "promtool is missing; installing Debian's prometheus package"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }; }
	@promtool --version | head -n1

## Start the local PostgreSQL cluster when it is not answering; fail loudly when there is none.
postgres:
	@if ! pg_isready -q -h 127.0.0.1 -p 5432; then \
	  echo "PostgreSQL is not answering on 127.0.0.1:5432; starting it"; \
	  version=$$(ls /etc/postgresql 2>/dev/null | head -n1); \
	  if [ -z "$$version" ]; then echo "no PostgreSQL cluster installed: the API tests need one" >&2; exit 1; fi; \
	  pg_ctlcluster --skip-systemctl-redirect $$version main start; \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi
	@pg_isready -h 127.0.0.1 -p 5432

## A Python venv with localstripe (PyPI), the Stripe-compatible peer of the end-to-end tests.
localstripe: $(VENV)/bin/localstripe

$(VENV)/bin/localstripe:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check localstripe==$(LOCALSTRIPE_VERSION)

## Benchmarks, each reported as a ratio against a baseline measured in the same run.
## The scale run seeds ROAMPAY_BENCH_SCALE_EVENTS events (10,000,000: about 13 GB and
## a quarter of an hour; set a smaller count to try it).
bench: postgres
	ROAMPAY_BENCH_PG_URL=$(PG_URL) $(CARGO) bench --bench replay
	ROAMPAY_BENCH_PG_URL=$(PG_URL) $(CARGO) bench --bench preauth
	ROAMPAY_BENCH_PG_URL=$(PG_URL) $(CARGO) bench --bench webhooks
	ROAMPAY_BENCH_PG_URL=$(PG_URL) $(CARGO) bench --bench scale

## Two instances under mixed load while they are SIGKILLed (>= 20 times), PostgreSQL
## restarts and Stripe fails; then money, the log and the read models are checked
## (docs/reliability.md). Needs root for `pg_ctlcluster … restart`. At most 10 minutes.
chaos: postgres
	ROAMPAY_BENCH_PG_URL=$(PG_URL) $(CARGO) bench --bench chaos

## 30 minutes of the same mix on one instance, memory and connections sampled each minute.
soak: postgres
	ROAMPAY_SOAK=1 ROAMPAY_BENCH_PG_URL=$(PG_URL) $(CARGO) bench --bench chaos

## Arbitrary bytes and JSON at every parser of the request boundary, 1,000,000 cases per
## target (make test runs the same targets with 256); see docs/reliability.md.
FUZZ_CASES ?= 1000000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release --lib fuzz -- --test-threads=2

clean:
	$(CARGO) clean
