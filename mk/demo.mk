# make demo: from a fresh machine, set everything up and wire a pod for real (scripts/demo.sh).
demo: deps test-deps binary
	scripts/demo.sh

.PHONY: demo
