# confab — the two commands a user needs are `make run` and `make test`.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)

.PHONY: run build test lint fmt vet staticcheck race pg-restart bench screenshots clean

## run: serve on :8080 with the embedded SQLite store (confab.db), no setup;
## ARGS passes flags to confab serve: make run ARGS="-addr :9090"
ARGS ?=
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/confab serve $(ARGS)

## build: the confab binary in ./bin
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/confab ./cmd/confab

## test: formatting, vet, staticcheck, then every test with the race detector
## on SQLite and Postgres (CONFAB_TEST_DATABASE_URL, default local postgres/test)
test: lint race pg-restart

lint: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# staticcheck's version is the tool directive in go.mod.
staticcheck:
	$(GO) tool staticcheck ./...

race:
	$(GO) test -race -count=1 -timeout 20m ./...

# The Postgres-restart fault test disturbs every other user of the server,
# so it runs alone, after the main pass, where a local cluster can be restarted.
pg-restart:
	@if command -v pg_ctlcluster >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && ls -d /etc/postgresql/*/main >/dev/null 2>&1; then \
	  v=$$(ls /etc/postgresql | sort -V | tail -n 1); \
	  CONFAB_TEST_PG_RESTART="pg_ctlcluster --skip-systemctl-redirect $$v main restart" \
	    $(GO) test -race -count=1 -run '^TestClusterSurvivesPostgresRestart$$' ./api/; \
	else echo "*** skipping the Postgres restart test: no local cluster this user can restart ***"; fi

## bench: the standard performance scenarios on Postgres and SQLite against
## their references; writes docs/PERFORMANCE.md (about ten minutes)
bench:
	./scripts/bench.sh

## screenshots: regenerate docs/screenshots/*.png with the browser tests (needs chromium)
screenshots:
	CI=true CONFAB_SCREENSHOTS=1 $(GO) test -count=1 -run '^Test' ./web/

clean:
	rm -rf bin confab.db confab.db-shm confab.db-wal
