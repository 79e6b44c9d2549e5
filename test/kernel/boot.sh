#!/usr/bin/env bash
# Boots the test VM built by build-initramfs.sh and waits for it to power off.
#   boot.sh <dir>   reads <dir>/vmlinuz and <dir>/initramfs.cpio,
#                   writes <dir>/console.log (ttyS0) and <dir>/data.txt (ttyS1, the scenarios' records)
# KVM when the host offers it, else TCG: the scenarios only need a working kernel, not speed.
set -euo pipefail
dir=$(cd "$1" && pwd)
accel=(-accel tcg)
if [[ -w /dev/kvm ]] && [[ ${MULTINIC_KERNEL_TCG:-0} != 1 ]]; then accel=(-accel kvm -accel tcg); fi
rm -f "$dir/console.log" "$dir/data.txt"
timeout "${MULTINIC_KERNEL_TIMEOUT:-300}" qemu-system-x86_64 "${accel[@]}" -m 1536 -smp 2 -nographic -no-reboot \
  -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.cpio" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init" \
  -serial "file:$dir/console.log" -serial "file:$dir/data.txt" \
  -monitor none -display none -nic none </dev/null
