# Build, test and CI entry points for every module of the go.work workspace.
#
# Modules are discovered at run time with `go list -m` (workspace mode), so
# new modules (bench/, ...) are picked up as soon as go.work lists them.
#
#   make test                      go test -race -count=1 ./... in every module
#   make test TESTFLAGS=-v         extra flags for go test
#   make check                     gofmt, go vet, go mod tidy -diff
#   make services                  start/verify the local test services
#   make bench                     benchmarks of bench/ into bench/latest.txt

GO        ?= go
TESTFLAGS ?=

SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# Shell snippet: fills the array `mods` with the directory of every workspace
# module and fails when `go list -m` fails or lists nothing.
LIST_MODULES = out=$$($(GO) list -m -f '{{.Dir}}') || { \
		echo "FAIL: '$(GO) list -m' failed" >&2; exit 1; }; \
	if [ -z "$$out" ]; then echo "FAIL: '$(GO) list -m' listed no module" >&2; exit 1; fi; \
	mapfile -t mods <<< "$$out"

.PHONY: all test check fmt-check vet tidy-check services bench

all: check test

test:
	@$(LIST_MODULES); \
	for dir in "$${mods[@]}"; do \
		echo "==> [$$dir] $(GO) test -race -count=1 $(TESTFLAGS) ./..."; \
		if ! (cd "$$dir" && $(GO) test -race -count=1 $(TESTFLAGS) ./...); then \
			echo "FAIL: tests failed in module $$dir" >&2; exit 1; \
		fi; \
	done

check: fmt-check vet tidy-check

fmt-check:
	@echo "==> gofmt -l ."; \
	files=$$(gofmt -l .); \
	if [ -n "$$files" ]; then \
		echo "FAIL: these files need gofmt:" >&2; echo "$$files" >&2; exit 1; \
	fi

vet:
	@$(LIST_MODULES); \
	for dir in "$${mods[@]}"; do \
		echo "==> [$$dir] $(GO) vet ./..."; \
		if ! (cd "$$dir" && $(GO) vet ./...); then \
			echo "FAIL: go vet failed in module $$dir" >&2; exit 1; \
		fi; \
	done

tidy-check:
	@$(LIST_MODULES); \
	for dir in "$${mods[@]}"; do \
		echo "==> [$$dir] $(GO) mod tidy -diff"; \
		if ! (cd "$$dir" && $(GO) mod tidy -diff); then \
			echo "FAIL: go.mod/go.sum not tidy in module $$dir (run 'go mod tidy' there)" >&2; exit 1; \
		fi; \
	done

services:
	bash scripts/services.sh

bench:
	@if [ -d bench ]; then \
		echo "==> [bench] $(GO) test -run '^$$' -bench . -benchmem -count=6"; \
		cd bench && $(GO) test -run '^$$' -bench . -benchmem -count=6 | tee latest.txt; \
	else \
		echo "bench/ does not exist; nothing to do"; \
	fi
