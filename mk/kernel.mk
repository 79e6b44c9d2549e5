# ipvlan and bridge VLANs under a real Debian kernel: this machine's kernel has neither ipvlan nor
# bridge VLAN filtering, so `make test-kernel` boots linux-image-amd64 under qemu (TCG) with an
# initramfs holding busybox, dash, ip, bridge, dist/multinic, the reference ipvlan, bridge,
# static and host-local plugins and test/kernel/scenarios.sh (also the VM failure injection).
# MULTINIC_KERNEL_REUSE=1 judges the last boot's records again without booting.
# The VM records what happened on a serial port; test/integration/ipvlan.test.ts boots it and
# judges the records. It is part of `make test` (a prerequisite; the file skips itself in the
# shared integration run, where the fork after a minute of qemu died with EPIPE).
#
#   make test-kernel        just the VM scenarios
#   make kernel-initramfs   build/kernel/{vmlinuz,initramfs.cpio}

KERNEL_DIR := build/kernel
KERNEL_INITRAMFS := $(KERNEL_DIR)/initramfs.cpio

$(KERNEL_INITRAMFS): $(BINARY) $(wildcard test/kernel/*) | test-install-deps
	test/kernel/build-initramfs.sh $(KERNEL_DIR) $(BINARY)

kernel-initramfs: $(KERNEL_INITRAMFS)

test: test-kernel

test-kernel: deps test-deps binary $(KERNEL_INITRAMFS)
	@mkdir -p $(REPORTS)
	MULTINIC_KERNEL_TEST=1 MULTINIC_BIN=$(abspath $(MULTINIC_BIN)) MULTINIC_KERNEL_DIR=$(abspath $(KERNEL_DIR)) \
		$(VITEST) run --project integration test/integration/ipvlan.test.ts $(call VITEST_REPORT,kernel)

.PHONY: test-kernel kernel-initramfs
