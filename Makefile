# tiktok-auth-proxy — `make demo` and `make test` work on a fresh machine.
GO        ?= go
BIN       := bin/tiktok-auth-proxy
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME  ?= 10s
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all build test unit fuzz rules lint demo bench clean deps

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/tiktok-auth-proxy

## deps: install the real servers the tests start (redis-server, chromium, promtool) when missing.
deps:
	./scripts/ensure-test-deps.sh

## test: every test — unit, e2e (the built binary against the simulator), browser, fuzz seeds, brief fuzzing, alert rules.
test: deps build
	$(GO) vet ./...
	$(GO) test -race -shuffle=on -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory fuzz rules

## fuzz: run each fuzz target briefly (their seed corpora already ran in `go test`).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./config
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./tiktok
	$(GO) test -run '^$$' -fuzz '^FuzzPeekCode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./tiktok
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./tokens/filestore

rules:
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts_test.yaml

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## demo: the proxy against the bundled TikTok simulator; nothing else needed.
demo: build
	./$(BIN) demo

## bench: the proxy against a tuned httputil.ReverseProxy, load, streaming, stampede (about 4 minutes; BENCH_FLAGS=-quick
## for a 30 s smoke run); prints the report and writes it into BENCHMARKS.md and docs/bench-*.png.
BENCH_FLAGS ?=
bench: build
	$(GO) run ./bench/cmd/tapbench -bin $(BIN) -plots docs -markdown BENCHMARKS.md $(BENCH_FLAGS)

clean:
	rm -rf bin
