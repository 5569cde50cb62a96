#!/usr/bin/env bash
# Builds a small Debian 12 cloud image, as a publisher might bring one: no
# guest kit, systemd, Debian's cloud kernel, cloud-init and
# qemu-guest-agent, from Debian packages with mmdebstrap, as ext4 made
# without a loop device (mkfs.ext4 -d) on a qcow2 disk; and the same image
# with its guest agent masked (an image without one). It boots with its own
# kernel and initramfs (given as boot files: root=/dev/vda) and takes its
# parameters through cloud-init's NoCloud datasource, the way every cloud
# hands them (docs/cloud-images.md).
#
# Writes OUT/disk.qcow2, OUT/disk-no-agent.qcow2, OUT/vmlinuz,
# OUT/initrd.img and OUT/manifest.txt (packages and versions). Cached in
# $CVL_IMAGE_CACHE (default /var/cache/cvl-test) by the hash of this script.
# Needs (as root): mmdebstrap, e2fsprogs, qemu-utils.
# Usage: scripts/build-cloud-image.sh OUT
set -euo pipefail
out=${1:?usage: build-cloud-image.sh OUT}
cache=${CVL_IMAGE_CACHE:-/var/cache/cvl-test}/cloud
mirror=${CVL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${CVL_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
suite=bookworm
epoch=1700000000
say() { echo "build-cloud-image: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap builds the root filesystem in a chroot)"
for tool in mmdebstrap mkfs.ext4 qemu-img; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install mmdebstrap e2fsprogs qemu-utils)"
done

packages=(systemd-sysv udev dbus linux-image-cloud-amd64 cloud-init ifupdown isc-dhcp-client
  iproute2 iputils-ping netbase ca-certificates qemu-guest-agent)
key=$( (sha256sum < "$0"; echo "${packages[*]}") | sha256sum | cut -c1-16)
image="$cache/debian-$key"
mkdir -p "$cache"
exec 9>"$image.lock"
flock 9
if [ ! -s "$image/done" ]; then
  started=$(date +%s)
  root=$(mktemp -d)
  rmdir "$root"
  log=$(mktemp)
  trap 'grep -q " $root/" /proc/mounts || rm -rf "$root"; rm -f "$log"' EXIT
  say "mmdebstrap $suite with ${packages[*]}"
  excludes=()
  for path in doc man info locale lintian; do
    excludes+=("--dpkgopt=path-exclude=/usr/share/$path/*")
  done
  excludes+=("--dpkgopt=path-include=/usr/share/doc/*/copyright")
  # A cloud image's own settings: it looks for NoCloud only (no network
  # metadata services here), and starts what a cloud image starts.
  SOURCE_DATE_EPOCH=$epoch mmdebstrap --quiet --variant=minbase \
    --include="$(IFS=,; echo "${packages[*]}")" "${excludes[@]}" \
    --aptopt='Acquire::Retries "3"' \
    --customize-hook='echo "datasource_list: [ NoCloud, None ]" > "$1/etc/cloud/cloud.cfg.d/90-cvl-test.cfg"' \
    --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"; : > "$1/etc/machine-id"' \
    --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-timesyncd.service >/dev/null 2>&1 || true' \
    --customize-hook='printf "/dev/vda / ext4 rw,noatime 0 1\n" > "$1/etc/fstab"' \
    "$suite" "$root" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" \
    "deb $security $suite-security main" >"$log" 2>&1 ||
    { cat "$log" >&2; die "mmdebstrap failed (its output is above)"; }
  rm -rf "$image.tmp"
  mkdir -p "$image.tmp"
  cp -L "$root/vmlinuz" "$image.tmp/vmlinuz"
  cp -L "$root/initrd.img" "$image.tmp/initrd.img"
  chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' | LC_ALL=C sort > "$image.tmp/manifest.txt"
  rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/*
  mib=$(( $(du -sm "$root" | cut -f1) * 5 / 4 + 256 ))
  uuid=$(echo "$key" | sha256sum | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
  disk() {
    E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -L cloudimg-rootfs -U "$uuid" \
      -E "hash_seed=$uuid,root_owner=0:0" -m 0 -d "$root" "$image.tmp/disk.raw" "${mib}M" >/dev/null
    # Compressed, as the cloud images distributions publish are (and a
    # third of the size for every copy the test makes).
    qemu-img convert -q -c -o compression_type=zstd -f raw -O qcow2 "$image.tmp/disk.raw" "$image.tmp/$1"
    rm -f "$image.tmp/disk.raw"
  }
  disk disk.qcow2
  # The same image without a guest agent.
  ln -sf /dev/null "$root/etc/systemd/system/qemu-guest-agent.service"
  disk disk-no-agent.qcow2
  say "built in $(( $(date +%s) - started )) s"
  echo "$key" > "$image.tmp/done"
  rm -rf "$image"
  mv "$image.tmp" "$image"
fi
# Each use marks its entry; an image no build has used for 30 days goes.
touch "$image/done"
find "$cache" -mindepth 2 -maxdepth 2 -name done -mtime +30 -printf '%h\n' |
  while read -r old; do rm -rf "$old" "$old.lock"; done
mkdir -p "$out"
# Hard links to the cache where it shares a filesystem with the output
# (nothing writes these in place), copies elsewhere.
for f in disk.qcow2 disk-no-agent.qcow2 vmlinuz initrd.img manifest.txt; do
  rm -f "$out/$f"
  ln "$image/$f" "$out/$f" 2>/dev/null || cp --reflink=auto "$image/$f" "$out/$f"
done
say "$out ($(du -h --apparent-size "$out/disk.qcow2" | cut -f1) disk)"
