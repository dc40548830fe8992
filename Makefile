# idsync Makefile. `make run` runs idsync on its embedded default; `make test`
# starts a real Kafka broker and Redis server (deploy/local), runs every test
# against them and stops them again.

GO          ?= go
BIN         ?= bin/idsync
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)

.PHONY: build run test test-unit bench lint stack-up stack-down clean

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/idsync

run: build
	./$(BIN) run --embedded

# test: real Kafka + Redis from deploy/local (unless IDSYNC_TEST_KAFKA and
# IDSYNC_TEST_REDIS already point at running ones), then vet and race tests.
test:
	bash deploy/local/test.sh

# test-unit: the fast inner loop, no real stack (end-to-end tests skip with -short).
test-unit:
	$(GO) test -short ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./idsync/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

stack-up:
	bash deploy/local/start.sh

stack-down:
	bash deploy/local/stop.sh

clean:
	rm -rf bin
