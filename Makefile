# multinic: build, test, demo, bench. Targets for each area live in mk/*.mk.
SHELL := /bin/bash
.DEFAULT_GOAL := all
NODE ?= node
NPM ?= npm

all: binary

node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $@

deps: node_modules/.package-lock.json

typecheck: deps
	npx tsc --noEmit -p .

include mk/*.mk

.PHONY: all deps typecheck
