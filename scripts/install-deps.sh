#!/usr/bin/env bash
# Installs, from Debian apt, what the test suite needs and the machine lacks.
# Idempotent: when everything is present it only checks and exits, without
# touching the network (apt-get update runs only when something is missing).
# Must run as root (network namespaces and apt both need it).
set -euo pipefail

LIBCNI_DIR=/usr/share/gocode/src/github.com/containernetworking/cni/libcni

die() { echo "install-deps: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root"
command -v apt-get >/dev/null || die "apt-get not found: this script targets Debian"

# Each entry: "<check>|<apt package alternatives, space separated>".
# The check is a path or a command that proves the package is there; we test
# files rather than dpkg state so a hand-installed tool also counts.
# libcni: Debian ships it as golang-github-appc-cni-dev, and newer releases may
# only know golang-github-containernetworking-cni-dev (a virtual name today),
# so both names are tried in order.
REQUIREMENTS=(
  "/usr/lib/cni/bridge|containernetworking-plugins"
  "cmd:go|golang-go"
  "$LIBCNI_DIR/api.go|golang-github-appc-cni-dev golang-github-containernetworking-cni-dev"
  "cmd:ip|iproute2"
  "cmd:hyperfine|hyperfine"
  # make bench: peak RSS of one plugin run (GNU time -f %M)
  "/usr/bin/time|time"
  # ping: connectivity checks between the harness's own netns (pod -> switch).
  "cmd:ping|iputils-ping"
  # make test-kernel: boots Debian's kernel under qemu with a busybox initramfs (the kernel
  # package itself is downloaded and unpacked by test/kernel/build-initramfs.sh, not installed).
  "cmd:qemu-system-x86_64|qemu-system-x86"
  "/bin/busybox|busybox-static"
  # bridge ipMasq (iptables backend) and macspoofchk / nftables backend
  "cmd:iptables|iptables"
  "cmd:nft|nftables"
  # the etcd IPAM store's tests start a real etcd on loopback
  "/usr/bin/etcd|etcd-server"
)

present() {
  local check=$1
  if [[ $check == cmd:* ]]; then
    command -v "${check#cmd:}" >/dev/null 2>&1
  else
    [[ -e $check ]]
  fi
}

missing=()
for req in "${REQUIREMENTS[@]}"; do
  present "${req%%|*}" || missing+=("$req")
done

[[ ${#missing[@]} -eq 0 ]] && exit 0

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing missing test dependencies" >&2
# apt's output goes to a log that is shown only when a step fails, so a
# successful run stays quiet but a failure shows apt's full explanation.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
apt_quiet() {
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    return 1
  fi
}
apt_quiet apt-get update -qq || die "apt-get update failed"

for req in "${missing[@]}"; do
  check=${req%%|*}
  installed=0
  for pkg in ${req#*|}; do
    if apt_quiet apt-get install -y -qq --no-install-recommends "$pkg"; then
      installed=1
      break
    fi
    echo "install-deps: could not install $pkg, trying the next name" >&2
  done
  [[ $installed -eq 1 ]] || die "no package could provide $check (tried: ${req#*|})"
  present "$check" || die "installed ${req#*|} but $check is still missing"
done
echo "install-deps: done" >&2
