#!/usr/bin/env bash
# Builds an appliance's program from its recipe (appliances/NAME/, see
# appliances/README.md) into OUT, a folder `cvl publish` takes as it is:
#
#   OUT/NAME.cvl, OUT/name.vmx  what the recipe publishes (the CVL file its
#                               `cvl` file names, and its VM description)
#   OUT/system.qcow2            the program disk: a root filesystem of Debian
#                               packages (Debian's essential set, the recipe's
#                               packages, the guest kit), ext4 made without a
#                               loop device (mkfs.ext4 -d)
#   OUT/vmlinuz, initrd.img     boot files: Debian's cloud kernel and a small
#                               initramfs that mounts the program disk
#   OUT/manifest.txt            every package and version in the image, then
#                               every file with its mode, size and SHA-256
#
# A recipe with a `base` file (a variant: the next version of an appliance)
# is its base's disk with the variant's files written into it in place
# (debugfs, no loop device): only the blocks that differ change, so the
# version publishes as a small delta.
#
# Same inputs, same image: packages come from mmdebstrap with a fixed
# SOURCE_DATE_EPOCH, the filesystem from mkfs.ext4 with a fixed UUID, hash
# seed and time. Results are cached under $CVL_IMAGE_CACHE (default
# /var/cache/cvl-test/appliances) by the hash of everything that goes in:
# the recipe, the guest kit, this script and the kernel's version. The
# manifest records the package versions the mirror gave.
#
# Needs (as root): mmdebstrap, e2fsprogs (mkfs.ext4, debugfs), qemu-utils,
# busybox-static, cpio, kmod (depmod), apt-get (download only).
# Usage: scripts/build-appliance.sh RECIPE OUT
set -euo pipefail
recipe=$(cd "${1:?usage: build-appliance.sh RECIPE OUT}" && pwd)
out=${2:?usage: build-appliance.sh RECIPE OUT}
here=$(cd "$(dirname "$0")" && pwd)
kit=$(cd "$here/../guest-kit" && pwd)
cache=${CVL_IMAGE_CACHE:-/var/cache/cvl-test}/appliances
mirror=${CVL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${CVL_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
suite=bookworm
epoch=1700000000
say() { echo "build-appliance: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap builds the root filesystem in a chroot)"
for tool in mmdebstrap mkfs.ext4 debugfs qemu-img cpio depmod apt-get dpkg; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install mmdebstrap e2fsprogs qemu-utils cpio kmod)"
done
[ -x /bin/busybox ] || die "/bin/busybox is missing (Debian: apt-get install busybox-static)"

# The kernel the image gets: asked of apt once per state of its package
# lists (apt-cache reads every list, about a second of CPU, and the tests
# run this script for every appliance they use), remembered beside the
# cache under the lists' names, sizes and times.
lists=$(stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null | sha256sum | cut -c1-16)
known="$cache/kernel-$lists"
if [ -s "$known" ]; then
  read -r kernel_pkg kernel_version < "$known"
else
  kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  [ -n "$kernel_pkg" ] || die "no linux-image-cloud-amd64 in the package lists: run apt-get update"
  kernel_version=$(apt-cache policy "$kernel_pkg" | awk '/Candidate:/ {print $2}')
  if mkdir -p "$cache" 2>/dev/null; then
    echo "$kernel_pkg $kernel_version" > "$known.$$" && mv -f "$known.$$" "$known"
  fi
fi
[ -n "$kernel_pkg" ] && [ -n "$kernel_version" ] || die "no kernel found in the package lists: run apt-get update"

# The hash of a folder's files: names, modes and contents, links followed.
tree_hash() {
  (cd "$1" && find -L . -type f -print0 | LC_ALL=C sort -z |
    xargs -0 -r sh -c 'for f; do printf "%s %s " "$f" "$(stat -L -c %a "$f")"; sha256sum < "$f"; done' sh) |
    sha256sum | cut -c1-16
}
# A recipe's hash: what of its folder goes into the image (not its
# variants' folders).
recipe_hash() {
  local dir=$1 item
  (cd "$dir" && for item in base packages modules setup files cvl *.vmx; do
     [ -e "$item" ] || continue
     echo "$item $(tree_hash_of "$item")"
   done
   if [ -f "$dir/cvl" ]; then tree_hash_of "$dir/$(head -n 1 "$dir/cvl")"; fi) |
    sha256sum | cut -c1-16
}
tree_hash_of() {
  if [ -d "$1" ]; then tree_hash "$1"; else { stat -L -c %a "$1"; cat "$1"; } | sha256sum | cut -c1-16; fi
}
boot_key=$( (tree_hash "$kit"; sha256sum < "$0"; echo "$kernel_pkg $kernel_version") | sha256sum | cut -c1-16)
boot="$cache/boot-$boot_key"

# The kernel, its modules and the initramfs: shared by every appliance.
build_boot() {
  [ -s "$boot/done" ] && return 0
  # One builder at a time (builds of several appliances may run at once).
  mkdir -p "$cache"
  exec 8>"$boot.lock"
  flock 8
  [ -s "$boot/done" ] && { exec 8>&-; return 0; }
  say "boot files: $kernel_pkg $kernel_version"
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && apt-get download -q "$kernel_pkg=$kernel_version" >/dev/null 2>&1) ||
    die "apt-get download $kernel_pkg=$kernel_version failed"
  dpkg -x "$work"/*.deb "$work/pkg"
  local kver
  kver=$(ls "$work/pkg/lib/modules")
  depmod -b "$work/pkg" "$kver"
  # The initramfs: busybox and what mounting /dev/vda needs (ext4 is built in).
  local ir="$work/initramfs"
  mkdir -p "$ir"/{bin,dev,proc,sys,root,lib/modules}
  cp /bin/busybox "$ir/bin/busybox"
  for applet in sh mount umount insmod switch_root mkdir sleep seq; do
    ln -s busybox "$ir/bin/$applet"
  done
  mknod -m 600 "$ir/dev/console" c 5 1
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
    cp "$(find "$work/pkg/lib/modules/$kver" -name "$m.ko" -print -quit)" "$ir/lib/modules/"
  done
  cp "$kit/initramfs-init" "$ir/init"
  chmod 755 "$ir/init"
  rm -rf "$boot.tmp"
  mkdir -p "$boot.tmp"
  (cd "$ir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 --reproducible | gzip -n -9) > "$boot.tmp/initrd.img"
  cp "$work/pkg/boot/vmlinuz-$kver" "$boot.tmp/vmlinuz"
  # The modules a root filesystem takes from: the whole tree, with depmod's index.
  tar -C "$work/pkg/lib/modules" -cf "$boot.tmp/modules.tar" "$kver"
  echo "$kver" > "$boot.tmp/kver"
  echo "$kernel_pkg $kernel_version" > "$boot.tmp/done"
  rm -rf "$boot"
  mv "$boot.tmp" "$boot"
  exec 8>&-
}

# Copies the modules named in $2 (and what they depend on) from the
# kernel's tree into the root filesystem $1, with depmod's index.
install_modules() {
  local root=$1 list=$2 kver tree
  kver=$(cat "$boot/kver")
  tree=$(mktemp -d)
  tar -C "$tree" -xf "$boot/modules.tar"
  local wanted=()
  while read -r m _; do
    case "$m" in ""|"#"*) continue ;; esac
    wanted+=("$m")
  done < "$list"
  local dep="$tree/$kver/modules.dep" files=()
  for m in "${wanted[@]}"; do
    local line
    line=$(grep -m 1 -E "(^|/)${m//_/[_-]}\.ko(\.[a-z]+)?:" "$dep") ||
      die "kernel $kver has no module $m (named in $list)"
    files+=(${line/:/})
  done
  mkdir -p "$root/lib/modules/$kver"
  for f in $(printf '%s\n' "${files[@]}" | LC_ALL=C sort -u); do
    mkdir -p "$root/lib/modules/$kver/$(dirname "$f")"
    cp "$tree/$kver/$f" "$root/lib/modules/$kver/$f"
  done
  cp "$tree/$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/" 2>/dev/null || true
  depmod -b "$root" "$kver"
  rm -rf "$tree"
}

# The manifest of a root filesystem: packages, then files.
manifest() {
  local root=$1
  echo "# packages"
  chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' | LC_ALL=C sort
  echo "# files: mode size sha256 path"
  (cd "$root" && find . -xdev \( -type f -o -type l \) -print0 | LC_ALL=C sort -z |
    xargs -0 -r sh -c 'for f; do if [ -L "$f" ]; then printf "l - %s %s\n" "$(readlink "$f")" "$f"; else printf "%s %s %s %s\n" "$(stat -c %a "$f")" "$(stat -c %s "$f")" "$(sha256sum < "$f" | cut -c1-64)" "$f"; fi; done' sh)
}

# A root filesystem from Debian packages, the kit and the recipe's files.
build_root() {
  local root=$1 packages=(busybox-static qemu-guest-agent kmod e2fsprogs)
  if [ -f "$recipe/packages" ]; then
    while read -r p _; do
      case "$p" in ""|"#"*) continue ;; esac
      packages+=("$p")
    done < "$recipe/packages"
  fi
  say "$name: mmdebstrap $suite with ${packages[*]}"
  local excludes=()
  for path in doc man info locale lintian; do
    excludes+=("--dpkgopt=path-exclude=/usr/share/$path/*")
  done
  # Copyright files stay (licences travel with the software).
  excludes+=("--dpkgopt=path-include=/usr/share/doc/*/copyright")
  SOURCE_DATE_EPOCH=$epoch mmdebstrap --quiet --variant=essential \
    --include="$(IFS=,; echo "${packages[*]}")" "${excludes[@]}" \
    --aptopt='Acquire::Retries "3"' \
    "$suite" "$root" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" \
    "deb $security $suite-security main" >"$log" 2>&1 ||
    { cat "$log" >&2; die "mmdebstrap failed (its output is above)"; }
  # The guest kit.
  install -m 755 "$kit/boot" "$kit/halt" -D -t "$root/usr/lib/cvl/"
  install -m 755 "$kit/cvl-configure" "$kit/cvl-reload" "$kit/cvl-param" "$kit/cvl-datadisk" \
    "$kit/cvl-iface" "$kit/cvl-wait-listen" "$kit/cvl-check" "$kit/cvl-x509-subject" -t "$root/usr/sbin/"
  install -m 755 "$kit/shutdown" "$root/usr/sbin/shutdown"
  install -m 644 "$kit/small-tools" "$root/usr/lib/cvl/small-tools"
  install -m 644 "$kit/inittab" "$root/etc/inittab"
  mkdir -p "$root/etc/cvl/reload.d"
  # busybox for what Debian's essential set lacks (init, ip, udhcpc, ...).
  for applet in $(/bin/busybox --list); do
    if [ ! -e "$root/usr/bin/$applet" ] && [ ! -e "$root/usr/sbin/$applet" ] &&
       [ ! -e "$root/usr/local/bin/$applet" ]; then
      ln -s /bin/busybox "$root/usr/local/bin/$applet"
    fi
  done
  ln -sf /bin/busybox "$root/usr/sbin/init"
  # Kernel modules: the guest kit's, and the recipe's.
  local list
  list=$(mktemp)
  printf '%s\n' failover net_failover virtio_net virtio_console virtio_rng qemu_fw_cfg > "$list"
  [ -f "$recipe/modules" ] && cat "$recipe/modules" >> "$list"
  install_modules "$root" "$list"
  rm -f "$list"
  # The recipe's own files, and its setup script run inside (users,
  # folders: what a package's maintainer scripts would do).
  [ -d "$recipe/files" ] && cp -a --no-preserve=ownership "$recipe/files/." "$root/"
  if [ -f "$recipe/setup" ]; then
    chroot "$root" /bin/sh -e -s < "$recipe/setup" >"$log" 2>&1 ||
      { cat "$log" >&2; die "$recipe/setup failed (its output is above)"; }
  fi
  # What varies between builds and means nothing in an appliance.
  rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* \
    "$root"/var/cache/ldconfig/aux-cache "$root"/var/cache/debconf/*-old \
    "$root"/var/lib/dpkg/*-old
  : > "$root/etc/machine-id"
  # mmdebstrap copied this machine's resolver: an appliance asks its own
  # port 53 (the DNS appliance answers there; elsewhere nothing does, and a
  # lookup fails at once instead of waiting on a server it cannot reach).
  rm -f "$root/etc/resolv.conf"
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$root/etc/resolv.conf"
  printf '127.0.0.1\tlocalhost\n' > "$root/etc/hosts"
  echo appliance > "$root/etc/hostname"
  # A hook that publishes nothing runs nothing: every hook is the recipe's.
  chmod -R go-w "$root/etc/cvl"
}

# The program disk from a root filesystem: ext4, reproducible, as qcow2.
make_disk() {
  local root=$1 disk=$2 mib uuid
  mib=$(( $(du -sm "$root" | cut -f1) * 5 / 4 + 96 ))
  uuid=$(echo "$key" | sha256sum | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
  E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -L cvl-root -U "$uuid" \
    -E "hash_seed=$uuid,root_owner=0:0" -T default -m 0 -d "$root" "$disk.raw" "${mib}M" >/dev/null
  qcow2 "$disk.raw" "$disk"
  rm -f "$disk.raw"
}

# A raw disk as the qcow2 that is published: compressed with zstd, a third
# of the size (LDAP's 151 MB became 49 MB) for every copy a program disk
# makes (the cache, a repository, each host's cache) and for every hash of
# it; QEMU reads compressed clusters as they are needed. Written in order,
# so the same raw disk gives the same bytes.
qcow2() {
  qemu-img convert -q -c -o compression_type=zstd -f raw -O qcow2 "$1" "$2"
}

name=$(basename "$recipe")
log=$(mktemp)
root="" base_out="" commands="" building=""
# Whatever happens, what this build made in temporary places goes (a root
# filesystem only when nothing is still mounted below it).
cleanup() {
  if [ -n "$root" ] && [ -d "$root" ]; then
    if grep -q " $root/" /proc/mounts; then
      say "left $root in place: something is still mounted below it"
    else
      rm -rf "$root"
    fi
  fi
  rm -rf "$log" "$commands" ${base_out:+"$base_out"} ${building:+"$building"}
}
trap cleanup EXIT
if [ -f "$recipe/base" ]; then
  base=$(cd "$recipe/$(head -n 1 "$recipe/base")" && pwd)
  [ -f "$base/packages" ] || die "$recipe/base names $base, which is not a recipe"
  [ ! -f "$recipe/packages" ] || die "$recipe is a variant (it has a base): its packages are its base's"
  name=$(basename "$base")
  base_out=$(mktemp -d)
  "$0" "$base" "$base_out"
  key=$( (cat "$base_out/.key"; recipe_hash "$recipe") | sha256sum | cut -c1-16)
else
  base=""
  key=$( (recipe_hash "$recipe"; tree_hash "$kit"; sha256sum < "$0"; echo "$kernel_pkg $kernel_version") |
    sha256sum | cut -c1-16)
fi
image="$cache/$name-$key"

mkdir -p "$cache"
exec 9>"$image.lock"
flock 9
if [ ! -s "$image/done" ]; then
  build_boot
  building="$image.tmp"
  rm -rf "$building"
  mkdir -p "$building"
  started=$(date +%s)
  if [ -z "$base" ]; then
    root=$(mktemp -d)
    rmdir "$root"
    build_root "$root"
    manifest "$root" > "$image.tmp/manifest.txt"
    make_disk "$root" "$image.tmp/system.qcow2"
  else
    # The variant's files written into a copy of its base's disk.
    say "$name: the files of $recipe written into $name's disk"
    qemu-img convert -q -f qcow2 -O raw "$base_out/system.qcow2" "$image.tmp/disk.raw"
    commands=$(mktemp)
    (cd "$recipe/files" && find . -mindepth 1 | LC_ALL=C sort) | while read -r rel; do
      path=${rel#.}
      if [ -d "$recipe/files/$rel" ]; then
        # Only what the base lacks: debugfs 1.47's mkdir of a directory that
        # exists still allocates an inode, which e2fsck then finds
        # unconnected when a later write takes a freed one (a variant that
        # replaces a file).
        debugfs -R "stat $path" "$image.tmp/disk.raw" 2>/dev/null </dev/null |
          grep -q 'Type: directory' || echo "mkdir $path"
      else
        echo "rm $path"
        echo "write $recipe/files/$rel $path"
        echo "sif $path mode 0100$(stat -c %a "$recipe/files/$rel")"
        echo "sif $path uid 0"
        echo "sif $path gid 0"
      fi
    done > "$commands"
    E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$commands" "$image.tmp/disk.raw" >/dev/null 2>"$log" || true
    if grep -q -v -E '^debugfs|rm: File not found|mkdir: .* already exists|^$' "$log"; then
      cat "$log" >&2
      die "debugfs could not write $recipe's files"
    fi
    e2fsck -fn "$image.tmp/disk.raw" >"$log" 2>&1 || { cat "$log" >&2; die "the variant's filesystem does not check clean"; }
    qcow2 "$image.tmp/disk.raw" "$image.tmp/system.qcow2"
    rm -f "$image.tmp/disk.raw"
    { cat "$base_out/manifest.txt"; echo "# changed by $(basename "$recipe")"
      (cd "$recipe/files" && find . -type f | LC_ALL=C sort); } > "$image.tmp/manifest.txt"
  fi
  cp "$boot/vmlinuz" "$boot/initrd.img" "$image.tmp/"
  echo "$key" > "$image.tmp/.key"
  say "$name: built in $(( $(date +%s) - started )) s"
  echo "$key" > "$image.tmp/done"
  rm -rf "$image"
  mv "$image.tmp" "$image"
  building=""
fi

# Each use marks its entry; entries that no build has used for 30 days go
# (a recipe's earlier inputs, a kernel since replaced): without this the
# cache grows by a suite's images with every change to the kit or builder.
touch "$image/done" "$boot/done" 2>/dev/null || true
find "$cache" -mindepth 2 -maxdepth 2 -name done -mtime +30 -printf '%h\n' |
  while read -r old; do rm -rf "$old" "$old.lock"; done

# What the recipe publishes, beside the program: its CVL file (the recipe's
# `cvl` file names it) and its VM description.
mkdir -p "$out"
src=$recipe
[ -n "$base" ] && [ ! -f "$recipe/cvl" ] && src=$base
[ -f "$src/cvl" ] || die "$src has no \`cvl\` file naming the CVL file it publishes"
cvl_file="$src/$(head -n 1 "$src/cvl")"
[ "$(basename "$cvl_file")" = "$name.cvl" ] || die "$src/cvl names $cvl_file, not a $name.cvl"
cp "$cvl_file" "$out/$name.cvl"
vm=$(sed -n 's/.*vm = "\([^"]*\)".*/\1/p;T;q' "$out/$name.cvl")
[ -n "$vm" ] || die "$src/$name.cvl sets no vm"
[ -f "$src/$vm" ] || die "$name.cvl sets vm = \"$vm\", which $src lacks"
cp "$src/$vm" "$out/$vm"
# The cached files themselves where the output is on the cache's filesystem
# (hard links: nothing writes a program disk in place, QEMU reads it as a
# backing file and `cvl publish` copies it), copies elsewhere.
for f in system.qcow2 vmlinuz initrd.img manifest.txt .key; do
  rm -f "$out/$f"
  ln "$image/$f" "$out/$f" 2>/dev/null || cp --reflink=auto "$image/$f" "$out/$f"
done
say "$name: $out ($(du -h --apparent-size "$out/system.qcow2" | cut -f1) program disk)"
