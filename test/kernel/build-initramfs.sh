#!/usr/bin/env bash
# Builds what `make test-kernel` boots: Debian's stock kernel (linux-image-amd64, unpacked with
# dpkg -x, never installed on the host) and an uncompressed initramfs holding busybox, dash as
# /bin/sh, iproute2's ip and bridge, the multinic binary, the reference ipvlan, bridge, static
# and host-local plugins (for the differential scenarios), the network modules, and the scenario runner as /init.
#
#   build-initramfs.sh <out dir> <multinic binary>
# Writes <out>/vmlinuz and <out>/initramfs.cpio. The kernel .deb is downloaded once into <out>.
set -euo pipefail

out=$1
bin=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- the kernel: the package linux-image-amd64 points at, unpacked into $out/kroot
if [[ ! -f $out/vmlinuz ]]; then
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  [[ -n $pkg ]] || { echo "build-initramfs: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
  deb=$(ls "$out"/"$pkg"_*.deb 2>/dev/null | head -1 || true)
  if [[ -z $deb ]]; then
    (cd "$out" && apt-get download "$pkg" >/dev/null 2>&1) || { echo "build-initramfs: apt-get download $pkg failed" >&2; exit 1; }
    deb=$(ls "$out"/"$pkg"_*.deb | head -1)
  fi
  rm -rf "$out/kroot"
  dpkg -x "$deb" "$out/kroot"
  cp "$out"/kroot/boot/vmlinuz-* "$out/vmlinuz"
fi
kver=$(ls "$out/kroot/lib/modules")
kmods=$out/kroot/lib/modules/$kver/kernel

# --- the initramfs tree
root=$out/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,lib,lib64,proc,sys,dev,run/netns,tmp,etc,modules,opt/cni/bin,var/lib/cni}

# Copies an executable and the shared libraries it loads, keeping their paths.
copy_exe() {
  local src=$1 dst=$2
  cp -L "$src" "$root$dst"
  ldd "$src" 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    [[ -e $root$lib ]] || cp -L "$lib" "$root$lib"
  done
}

cp /bin/busybox "$root/bin/busybox"
for tool in mount umount insmod poweroff cat grep sed sleep mkdir echo tr wc head sort printf ln rm cut awk seq timeout ping ls; do
  ln -sf busybox "$root/bin/$tool"
done
copy_exe /usr/bin/dash /bin/dash
ln -sf dash "$root/bin/sh"
copy_exe "$(command -v ip)" /sbin/ip
copy_exe "$(command -v bridge)" /sbin/bridge
copy_exe "$bin" /opt/cni/bin/multinic
for alias in ipvlan static macvlan bridge whereabouts; do ln -sf multinic "$root/opt/cni/bin/$alias"; done
# The reference plugin, for the differential scenarios (static Go binaries).
mkdir -p "$root/ref"
for p in ipvlan static bridge host-local; do cp /usr/lib/cni/$p "$root/ref/$p"; done

# Modules in dependency order (the .ko files carry their own depends= line; these are leaves first).
for m in net/llc/llc.ko net/802/stp.ko net/bridge/bridge.ko drivers/net/veth.ko drivers/net/dummy.ko \
         drivers/net/macvlan.ko drivers/net/ipvlan/ipvlan.ko; do
  cp "$kmods/$m" "$root/modules/"
done

cp "$here/init" "$root/init"
cp "$here/scenarios.sh" "$root/scenarios.sh"
chmod +x "$root/init" "$root/scenarios.sh"

(cd "$root" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) > "$out/initramfs.cpio.tmp"
mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
echo "build-initramfs: $(du -h "$out/initramfs.cpio" | cut -f1) initramfs for kernel $kver"
