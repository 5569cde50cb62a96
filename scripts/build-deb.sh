#!/usr/bin/env bash
# Builds the Debian package of the `cvl` command: target/debian/cvl_VERSION_ARCH.deb.
#
#   scripts/build-deb.sh [--profile PROFILE]
#
# The binary comes from `cargo build --profile dist` (release, thin LTO, one
# codegen unit, no debug info; stripped here); `--profile release` is quicker
# to build and makes a larger binary. The package holds:
#   /usr/bin/cvl
#   /usr/share/man/man1/cvl*.1.gz          one page per command (`cvl man`)
#   bash, zsh and fish completions         (`cvl completions SHELL`)
#   /lib/systemd/system/cvl-utility.service (not enabled: see docs/utility.md)
#   /usr/share/doc/cvl/                    README, docs/, examples/, copyright
#   /usr/share/cvl/scripts, guest-kit/     the appliance builder of `cvl build`
# Depends: the shared libraries the binary links (dpkg-shlibdeps).
# Recommends: qemu-system-x86, qemu-utils, iproute2 (what `cvl apply` runs
# on a QEMU host); Suggests: openssh-client, postgresql-client, and what
# `cvl build` runs (mmdebstrap, e2fsprogs, busybox-static, cpio, kmod).
# Needs: cargo, dpkg-dev (dpkg-deb, dpkg-shlibdeps), binutils (strip), gzip.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=dist
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=${2:?--profile needs a name}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in cargo dpkg-deb dpkg-shlibdeps strip gzip; do
  command -v "$tool" >/dev/null || {
    echo "build-deb: $tool is missing (Debian: apt-get install dpkg-dev binutils gzip)" >&2
    exit 2
  }
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml's [workspace.package]" >&2; exit 2; }

echo "build-deb: cargo build --profile $profile -p cvl" >&2
cargo build --locked --profile "$profile" -p cvl --bin cvl
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
case $profile in dev|test) out_dir=debug ;; *) out_dir=$profile ;; esac
bin="$target_dir/$out_dir/cvl"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/cvl_${version}_$arch"
doc="$root/usr/share/doc/cvl"
install -D -m 0755 "$bin" "$root/usr/bin/cvl"
strip --strip-all "$root/usr/bin/cvl"

# Manual pages and completions, from the binary's own command tree.
"$root/usr/bin/cvl" man --out "$root/usr/share/man/man1" 2>/dev/null
gzip -9n "$root"/usr/share/man/man1/*.1
install -d "$root/usr/share/bash-completion/completions" \
  "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
"$root/usr/bin/cvl" completions bash > "$root/usr/share/bash-completion/completions/cvl"
"$root/usr/bin/cvl" completions zsh > "$root/usr/share/zsh/vendor-completions/_cvl"
"$root/usr/bin/cvl" completions fish > "$root/usr/share/fish/vendor_completions.d/cvl.fish"

install -D -m 0644 packaging/cvl-utility.service "$root/lib/systemd/system/cvl-utility.service"

# The appliance builder of `cvl build` and the guest kit it puts into every
# image, where `cvl build` looks for them (../share/cvl from /usr/bin).
install -D -m 0755 scripts/build-appliance.sh "$root/usr/share/cvl/scripts/build-appliance.sh"
install -d "$root/usr/share/cvl/guest-kit"
for f in guest-kit/*; do
  install -m "$(stat -c %a "$f")" "$f" "$root/usr/share/cvl/guest-kit/"
done

# Documentation and the paper's examples.
install -d "$doc/docs" "$doc/examples"
install -m 0644 README.md ARCHITECTURE.md "$doc/"
install -m 0644 docs/*.md "$doc/docs/"
# Whole, as README tells a user to use them (`cp -r .../examples . && cvl
# check examples`): cvl.toml maps the paper's URLs to repos/ beside it.
cp -r examples/groupware examples/repos examples/cvl.toml "$doc/examples/"
find "$doc/examples" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
license=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^license = "\(.*\)"/\1/p' Cargo.toml)
cat > "$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: cvl
Comment: The CVL toolchain. The Rust crates it is built from keep their own
 licenses: \`cargo metadata\` lists them.

Files: *
License: ${license:-MIT OR Apache-2.0}
EOF
date=$(git log -1 --format=%aD 2>/dev/null || date -R)
printf 'cvl (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- CVL developers <cvl@localhost>  %s\n' \
  "$version" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" "$date" |
  gzip -9n > "$doc/changelog.Debian.gz"

# Control: shared-library dependencies as dpkg-shlibdeps computes them.
mkdir -p "$work/shlibs/debian" "$root/DEBIAN"
printf 'Source: cvl\n\nPackage: cvl\nArchitecture: any\n' > "$work/shlibs/debian/control"
depends=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$root/usr/bin/cvl" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: cvl
Version: $version
Architecture: $arch
Maintainer: CVL developers <cvl@localhost>
Installed-Size: $size
Depends: $depends
Recommends: qemu-system-x86, qemu-utils, iproute2
Suggests: openssh-client, postgresql-client, mmdebstrap, e2fsprogs, busybox-static, cpio, kmod
Section: admin
Priority: optional
Description: toolchain for CVL virtual appliances
 CVL (the Collective Virtual appliance Language) describes virtual
 appliances: VMs and networks of them, with parameters marked required or
 sensitive. cvl checks and formats CVL files, publishes appliances into
 repositories, plans and applies deployments on QEMU hosts (this machine or
 over SSH), keeps them up to date (cvl utility run), and serves editors
 (cvl lsp).
EOF
mkdir -p "$target_dir/debian"
out="$target_dir/debian/cvl_${version}_$arch.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "build-deb: $out ($(du -h "$out" | cut -f1); installed ${size} KiB; binary $(du -h "$root/usr/bin/cvl" | cut -f1) stripped)" >&2
echo "$out"
