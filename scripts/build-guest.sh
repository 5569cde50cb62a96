#!/usr/bin/env bash
# Builds the tiny test and demo appliance guest from Debian packages: the
# cloud kernel (direct boot), an initramfs of busybox-static, the virtio
# modules, qemu-guest-agent and the guest kit (guest-kit/). Writes
# OUT/vmlinuz and OUT/initrd.img; does nothing when they are there.
# Needs: apt-get (download only), dpkg, cpio, busybox-static, gzip, kmod
# (depmod).
# Usage: scripts/build-guest.sh OUT
set -euo pipefail
out=${1:?usage: build-guest.sh OUT}
kit="$(cd "$(dirname "$0")/../guest-kit" && pwd)"
# Built again when the kit or this script changes.
stamp=$( (cat "$kit"/* "$0") | sha256sum | cut -c1-16)
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$kernel_pkg" ]; then
  echo "build-guest: no linux-image-cloud-amd64 in the package lists: run apt-get update" >&2
  exit 1
fi
apt-get download -q "$kernel_pkg" qemu-guest-agent >/dev/null 2>&1 || {
  echo "build-guest: apt-get download $kernel_pkg qemu-guest-agent failed" >&2
  exit 1
}
for deb in ./*.deb; do dpkg -x "$deb" pkg; done
kver=$(ls pkg/lib/modules)
root=initramfs
mkdir -p $root/{bin,sbin,etc/cvl/reload.d,proc,sys,dev,run,tmp,lib64,usr/lib/cvl,usr/lib/x86_64-linux-gnu,lib/x86_64-linux-gnu}
cp /bin/busybox $root/bin/busybox
for applet in $($root/bin/busybox --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
# busybox init is PID 1 (the kernel runs /init): the kit's inittab.
ln -s bin/busybox $root/init
mknod -m 600 $root/dev/console c 5 1
mkdir -p "$root/lib/modules/$kver"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
         virtio_console virtio_blk failover net_failover virtio_net virtio_rng qemu_fw_cfg; do
  f=$(find "pkg/lib/modules/$kver" -name "$m.ko" -print -quit)
  [ -n "$f" ] && cp "$f" "$root/lib/modules/$kver/"
done
depmod -b $root "$kver" 2>/dev/null
cp pkg/usr/sbin/qemu-ga $root/sbin/qemu-ga
# qemu-ga's shared libraries, as this machine (the same Debian release) has them.
for lib in $(ldd pkg/usr/sbin/qemu-ga | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}'); do
  dest="$root$(dirname "$lib")"
  mkdir -p "$dest"
  cp -L "$lib" "$dest/"
done
cp "$kit/inittab" $root/etc/inittab
cp "$kit/boot" "$kit/halt" $root/usr/lib/cvl/
cp "$kit/cvl-configure" "$kit/cvl-reload" "$kit/cvl-param" "$kit/cvl-datadisk" "$kit/cvl-iface" "$kit/cvl-wait-listen" "$kit/cvl-check" $root/sbin/
cp "$kit/shutdown" $root/sbin/shutdown
chmod +x $root/usr/lib/cvl/* $root/sbin/*
cp "$kit/small-tools" $root/usr/lib/cvl/small-tools
(cd $root && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initrd.img.tmp"
cp "pkg/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
echo "$stamp" > "$out/stamp"
echo "build-guest: $out/vmlinuz ($kver) and $out/initrd.img"
