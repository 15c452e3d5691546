# moat — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 10s

.PHONY: build run test race lint vet fmt bench fuzz interop chaos clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/moat ./cmd/moat

# Runs moat on its safe built-in default: 127.0.0.1:2525, local domain
# localhost, data under ./moat-data.
run: build
	./bin/moat serve

test:
	$(GO) test -count=1 -timeout 20m $(PKGS)

race:
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -l -w $$(git ls-files '*.go')

# gofmt, go vet, and go.mod/go.sum exactly as `go mod tidy` leaves them
# (direct requirements in the first block, none marked indirect).
lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum not tidy: run go mod tidy"; exit 1; }
	@if awk '/^require \(/{b++} b==1 && /\/\/ indirect/{bad=1} END{exit !bad}' go.mod; then echo "go.mod: an indirect requirement in the first (direct) block"; exit 1; fi

# moat vs a private Postfix vs smtp-sink alone on loopback (scripts/bench.sh:
# BENCH_MESSAGES, BENCH_SESSIONS, BENCH_SIZE, BENCH_PER_CONN, BENCH_ROUNDS), results in
# bench/results/; then the Go micro-benchmarks (BENCH_GO=0 skips them).
bench:
	bash scripts/bench.sh

# Interop with real peers (installs Postfix tools, swaks, Dovecot first).
interop:
	bash scripts/interop.sh

# kill -9 at random moments; nothing acknowledged may be lost
# (CHAOS_CYCLES, CHAOS_MESSAGES; CI: CHAOS_CYCLES=5 CHAOS_MESSAGES=300).
chaos:
	bash scripts/chaos.sh

# Every native fuzz target for FUZZTIME each.
fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

clean:
	rm -rf bin moat-data
