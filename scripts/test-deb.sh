#!/usr/bin/env bash
# Installs a cvl package into a fresh Debian 12 (mmdebstrap minbase with
# man-db, thrown away afterwards), uses it as an operator would, purges it,
# and checks that nothing of it is left.
#
#   scripts/test-deb.sh target/debian/cvl_VERSION_ARCH.deb
#
# Needs (as root): mmdebstrap, and the Debian mirror ($CVL_DEBIAN_MIRROR,
# default deb.debian.org) for the chroot's packages.
set -euo pipefail
deb=$(realpath "${1:?usage: test-deb.sh CVL.deb}")
mirror=${CVL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" = 0 ] || { echo "test-deb: run as root (mmdebstrap makes a chroot)" >&2; exit 2; }
command -v mmdebstrap >/dev/null || { echo "test-deb: mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 2; }

# What runs inside the chroot. Every step says what it checks; the first
# that fails ends the test.
inside=$(cat <<'EOF'
set -eu
step() { echo "test-deb: $*"; }
snapshot() {
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
    -o -path /var/cache -o -path /var/lib/apt -o -path /var/lib/dpkg -o -path /var/log \
    -o -path /var/lib/systemd \) -prune -o -print | LC_ALL=C sort
}
snapshot > /tmp/before
step "apt-get install ./$(basename /tmp/pkg/*.deb)"
apt-get install -y -q --no-install-recommends /tmp/pkg/*.deb > /tmp/install.log 2>&1 ||
  { cat /tmp/install.log; exit 1; }
step "cvl --version: $(cvl --version)"
cd /usr/share/doc/cvl/examples/groupware/suite
step "cvl check DNS.cvl (an installed example)"
cvl check --color never DNS.cvl
step "cvl fmt --check on the installed examples"
cvl fmt --check DNS.cvl Firewall.cvl
step "the installed examples, copied elsewhere, check without an error (as README says)"
mkdir -p /tmp/user && cd /tmp/user
cp -r /usr/share/doc/cvl/examples .
cvl check --color never examples > /tmp/check.log 2>&1 || { cat /tmp/check.log; exit 1; }
if grep -q '^error' /tmp/check.log; then cat /tmp/check.log; exit 1; fi
step "cvl eval of the paper's user file, in place in the copy"
cvl eval examples/groupware/AcmeGroupware.cvl -o AcmeGroupware > /dev/null
cd / && rm -rf /tmp/user
step "man -w cvl: $(man -w cvl)"
man -w cvl-apply cvl-utility-run cvl-host-add > /dev/null
step "completions for bash, zsh and fish"
test -s /usr/share/bash-completion/completions/cvl
test -s /usr/share/zsh/vendor-completions/_cvl
test -s /usr/share/fish/vendor_completions.d/cvl.fish
step "cvl build finds the installed builder, which names what this machine lacks"
mkdir -p /tmp/recipe && echo lighttpd > /tmp/recipe/packages && echo Web.cvl > /tmp/recipe/cvl
if cvl build /tmp/recipe /tmp/out > /tmp/build.log 2>&1; then cat /tmp/build.log; exit 1; fi
grep -q 'mmdebstrap is missing (Debian: apt-get install mmdebstrap' /tmp/build.log || { cat /tmp/build.log; exit 1; }
test -x /usr/share/cvl/guest-kit/cvl-configure
rm -rf /tmp/recipe /tmp/out
step "the systemd unit names the installed binary"
grep -q '^ExecStart=/usr/bin/cvl utility run' /lib/systemd/system/cvl-utility.service
dpkg -L cvl > /tmp/files
step "$(wc -l < /tmp/files) paths installed"
step "apt-get purge cvl"
apt-get purge -y -q cvl > /tmp/purge.log 2>&1 || { cat /tmp/purge.log; exit 1; }
if dpkg -s cvl > /dev/null 2>&1; then echo "test-deb: cvl is still installed" >&2; exit 1; fi
while read -r path; do
  [ -d "$path" ] && continue
  if [ -f "$path" ] || [ -L "$path" ]; then echo "test-deb: the purge left $path" >&2; exit 1; fi
done < /tmp/files
# The libraries it pulled in go too, as apt removes what nothing needs.
apt-get autoremove --purge -y -q > /tmp/autoremove.log 2>&1 || { cat /tmp/autoremove.log; exit 1; }
snapshot > /tmp/after
if ! diff -u /tmp/before /tmp/after; then
  echo "test-deb: the purge left the paths above" >&2
  exit 1
fi
step "purged: nothing left"
EOF
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s\n' "$inside" > "$work/inside.sh"
started=$(date +%s)
mmdebstrap --quiet --variant=minbase --include=man-db \
  --aptopt='Acquire::Retries "3"' \
  --customize-hook='mkdir -p "$1/tmp/pkg"' \
  --customize-hook="copy-in $deb /tmp/pkg" \
  --customize-hook="copy-in $work/inside.sh /tmp" \
  --customize-hook='chroot "$1" sh /tmp/inside.sh' \
  bookworm /dev/null "deb $mirror bookworm main"
echo "test-deb: passed in $(( $(date +%s) - started )) s"
