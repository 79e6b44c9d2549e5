# Test targets. Included by the top Makefile (which defines NODE, NPM, deps).
#
#   make test-deps         apt packages the tests need + build/cnitool
#   make test-unit         vitest, project "unit"        (test/unit/**)
#   make test-integration  vitest, project "integration" (test/integration/**),
#                          needs root: creates network namespaces
#   make test              both
#
# `make test` on a fresh clone installs everything it needs: npm deps (deps),
# Debian packages and the driver (test-deps) and the product (binary, from
# mk/binary.mk). Integration tests find the product through MULTINIC_BIN.

GO ?= go
VITEST ?= npx vitest
MULTINIC_BIN ?= dist/multinic
CNITOOL := build/cnitool
CNITOOL_SRC := $(wildcard test/driver/cnitool/*.go)

# The driver builds against Debian's libcni sources (golang-github-appc-cni-dev)
# in GOPATH mode: no go.mod, no module proxy, no network. The first GOPATH
# entry is ours so the read-only /usr/share/gocode is never written to; the
# build cache lives in build/ for the same reason and so `make clean`-style
# removal of build/ resets everything.
CNITOOL_GOENV := GO111MODULE=off GOFLAGS= \
	GOPATH=$(CURDIR)/build/gopath:/usr/share/gocode \
	GOCACHE=$(CURDIR)/build/gocache

# The script is idempotent and returns in milliseconds when nothing is
# missing, so it simply runs every time instead of keeping a stamp file that
# could go stale when the machine changes under the work tree.
test-install-deps:
	@scripts/install-deps.sh

# Order-only: the packages must be present before compiling, but running the
# (phony) install step must not force a rebuild of the driver.
$(CNITOOL): $(CNITOOL_SRC) | test-install-deps
	@mkdir -p $(@D)
	$(CNITOOL_GOENV) $(GO) build -o $@ ./test/driver/cnitool

test-deps: test-install-deps $(CNITOOL)

# Each run also writes a JSON report, so `make test` can close with one plain
# "N passed, N failed" line that CI reads as the test count.
REPORTS := build/test-reports
VITEST_REPORT = --reporter=default --reporter=json --outputFile.json=$(REPORTS)/$(1).json

test-unit: deps
	@mkdir -p $(REPORTS)
	$(VITEST) run --project unit $(call VITEST_REPORT,unit)

# Files run one at a time (see vitest.config.ts): they create network
# namespaces and veths as root, and the product keeps node-wide state.
test-integration: deps test-deps binary
	@mkdir -p $(REPORTS)
	MULTINIC_BIN=$(abspath $(MULTINIC_BIN)) $(VITEST) run --project integration $(call VITEST_REPORT,integration)

test: test-unit test-integration
	@$(NODE) scripts/test-summary.mjs $(REPORTS)/unit.json $(REPORTS)/integration.json $(wildcard $(REPORTS)/kernel.json)

.PHONY: test test-unit test-integration test-deps test-install-deps
