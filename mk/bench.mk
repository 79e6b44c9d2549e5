# make bench: multinic side by side with the reference plugins (bench/bench.mjs). Included by
# the top Makefile. Needs root (network namespaces); about 5-8 minutes.
#
#   make bench               30 runs per case; prints the table of ratios, writes
#                            bench/results/bench-<time>.json and docs/benchmarks.md
#   make bench BENCH_RUNS=5  a quick look (the doc and JSON are written all the same)
#   make bench BENCH_ARGS='--skip-scale --no-write'
#   make bench BENCH_ARGS=--skip-stores   without part 6, the IPAM stores (bench/stores.ts:
#                            whereabouts on file, etcd, kubernetes; a real etcd from Debian's
#                            etcd-server and the tests' API server stand-in on 127.0.0.1, ~40 s)
#   make bench BENCH_ARGS='--only stores' part 6 alone: prints its table, writes nothing
#
# Runs under `env -i` (nothing of the caller's environment, e.g. NODE_EXTRA_CA_CERTS or
# NODE_OPTIONS, reaches either side), at nice -10 so the other load on a shared machine
# disturbs both sides less; the two sides alternate run by run.

BENCH_RUNS ?= 30
BENCH_ARGS ?=
BENCH_NICE ?= nice -n -10

bench: deps test-deps binary
	$(BENCH_NICE) env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		$(NODE) bench/bench.mjs --runs $(BENCH_RUNS) --bin $(BINARY) --cnitool $(CNITOOL) $(BENCH_ARGS)

.PHONY: bench
