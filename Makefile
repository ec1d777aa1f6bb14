# tiktok-auth-proxy — `make demo` and `make test` work on a fresh machine.
GO        ?= go
BIN       := bin/tiktok-auth-proxy
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# FUZZTIME is go test's -fuzztime: a count (Nx) in make test, whose runs then have no deadline for
# Go 1.26's fuzz coordinator to race (scripts/fuzz.sh); a duration for longer runs.
FUZZTIME  ?= 20000x
# FIGURES collects the figures the suites print (hostile cases, kills, fuzz executions) for make test's end.
FIGURES   := $(CURDIR)/bin/test-figures.txt
STATICCHECK_VERSION ?= v0.8.2
IMAGE     ?= tiktok-auth-proxy:$(VERSION)
# BUILDAH may carry global options, e.g. "buildah --storage-driver vfs".
BUILDAH   ?= buildah
IMAGE_DIR := bin/image
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: all build test unit fuzz fuzz-long soak rules lint demo bench clean deps image image-context screenshots

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/tiktok-auth-proxy

## image-context: stage what the FROM-scratch Dockerfile copies: the static
## binary, the CA bundle, passwd/group for the non-root user 65532, the store's directory.
image-context: build
	rm -rf $(IMAGE_DIR)
	mkdir -p $(IMAGE_DIR)/rootfs/usr/local/bin $(IMAGE_DIR)/rootfs/etc/ssl/certs $(IMAGE_DIR)/rootfs/var/lib \
	  $(IMAGE_DIR)/state/tiktok-auth-proxy
	cp $(BIN) $(IMAGE_DIR)/rootfs/usr/local/bin/tiktok-auth-proxy
	cp $(CA_BUNDLE) $(IMAGE_DIR)/rootfs/etc/ssl/certs/ca-certificates.crt
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > $(IMAGE_DIR)/rootfs/etc/passwd
	printf 'root:x:0:\nnonroot:x:65532:\n' > $(IMAGE_DIR)/rootfs/etc/group
	chmod 0700 $(IMAGE_DIR)/state/tiktok-auth-proxy

## image: build the container image with buildah (docker format, which keeps HEALTHCHECK).
image: image-context
	$(BUILDAH) build --isolation chroot --format docker --build-arg VERSION=$(VERSION) -t $(IMAGE) .

## deps: install the real servers the tests start (redis-server, chromium, promtool) when missing.
deps:
	./scripts/ensure-test-deps.sh

## test: every test — unit, e2e (the built binary against the simulator), browser, fuzz seeds, brief fuzzing, alert rules.
test: deps build
	$(GO) vet ./...
	@mkdir -p bin; rm -f $(FIGURES)
	TAP_FIGURES=$(FIGURES) $(GO) test -race -shuffle=on -count=1 -timeout 15m ./...
	TAP_FIGURES=$(FIGURES) $(MAKE) --no-print-directory fuzz rules
	@echo "figures:"; cat $(FIGURES)

## fuzz: run each fuzz target for FUZZTIME, 20,000 executions (their seed corpora already ran in `go test`)
## and print the executions of each and in all; a crasher fails the target and is saved under
## testdata/fuzz/ as a regression input. `make fuzz FUZZTIME=2m` or `make fuzz-long` (FUZZTIME_LONG each)
## fuzz longer.
FUZZ_TARGETS := config:FuzzParse tiktok:FuzzDecodeEnvelope tiktok:FuzzPeekCode tiktok:FuzzPeekFast tiktok:FuzzTokenAnswer \
	tokens/filestore:FuzzDecode setup:FuzzCallback setup:FuzzParseRedirect \
	proxy:FuzzSelectQuery proxy:FuzzSelectJSON proxy:FuzzSelectMultipart proxy:FuzzSelectForm proxy:FuzzMayNameApp proxy:FuzzIDMembers \
	proxy:FuzzValidJSON internal/jsonlog:FuzzFloat internal/jsonlog:FuzzString
FUZZTIME_LONG ?= 5m
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh $(FUZZ_TARGETS)

fuzz-long:
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_LONG)

## soak: the crash test at scale: the proxy killed (SIGKILL) TAP_KILLS times (1000) at random moments
## under load with 1.5 s rotating tokens, restarted each time; prints kills, survived and window.
## Then three replicas sharing one Redis under client load for TAP_REPLICAS_DURATION (60s; 20s in make test).
TAP_KILLS ?= 1000
TAP_REPLICAS_DURATION ?= 60s
soak: build
	@mkdir -p bin; rm -f $(FIGURES)
	TAP_KILLS=$(TAP_KILLS) TAP_FIGURES=$(FIGURES) $(GO) test -count=1 -timeout 90m -run '^TestCrashScale$$' ./e2e/
	@cat $(FIGURES)
	TAP_REPLICAS_DURATION=$(TAP_REPLICAS_DURATION) $(GO) test -count=1 -v -run '^TestReplicasShareOneGrant$$' ./e2e/

rules:
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts_test.yaml
	promtool check config --syntax-only deploy/prometheus/scrape.yaml

## screenshots: regenerate the README's screenshots of the setup, success and error pages (docs/).
screenshots:
	UPDATE_DOCS=1 $(GO) test -count=1 -run '^TestBrowserScreenshots$$' ./e2e/

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
