#!/usr/bin/env bash
# Rebuilds examples/repos/: the paper's appliances published as the
# repositories their imports name (http://virtualappliance.org/NAME, mapped
# to examples/repos/ by examples/cvl.toml), so that `cvl check`, `cvl eval`
# and the language server work on the examples in place, with no flags.
#
# The repositories evolve as in the paper: DNS versions 1-3 and Firewall 1-5
# are the Groupware figure's (which pins DNS 3 and Firewall 5); their newest
# versions (DNS 4, Firewall 6) are the suite's. Each VM appliance gets a
# one-disk VM description with an empty 1 MiB program disk: they describe,
# they do not boot. Run after changing an example; `cvl/tests/examples.rs`
# fails while the repositories differ from the files.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cvl="${CVL:-$root/target/debug/cvl}"
[ -x "$cvl" ] || cargo build -q -p cvl --manifest-path "$root/Cargo.toml"
ex="$root/examples"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
export CVL_HOME="$stage/home"
# The staged copies live outside examples/: point their imports here too.
export CVL_MIRRORS="http://virtualappliance.org/=file://$ex/repos/"
rm -rf "$ex/repos"
mkdir -p "$ex/repos"
cd "$ex"

publish() { # publish NAME FILE [TIMES]
  local name=$1 file=$2 times=${3:-1} dir="$stage/$1-$RANDOM"
  mkdir -p "$dir"
  cp "$file" "$dir/"
  local vm
  vm=$(sed -n 's/.*vm = "\(.*\)";.*/\1/p;T;q' "$file")
  if [ -n "$vm" ]; then
    [ -f "$stage/system.qcow2" ] || qemu-img create -q -f qcow2 "$stage/system.qcow2" 1M
    cp "$stage/system.qcow2" "$dir/system.qcow2"
    printf 'memory = 128\n\n[[disk]]\ndevice = "ide0:0"\nfile = "system.qcow2"\n' > "$dir/$vm"
  fi
  [ -d "repos/$name" ] || "$cvl" repo create "repos/$name" >/dev/null
  for _ in $(seq "$times"); do
    "$cvl" publish "repos/$name" "$dir/$(basename "$file")" >/dev/null 2>"$stage/log" ||
      { cat "$stage/log"; exit 1; }
  done
}

publish DNS groupware/DNS.cvl 3
publish Firewall groupware/Firewall.cvl 5
publish OpenLDAP groupware/OpenLDAP.cvl
publish Groupware groupware/Groupware.cvl
for name in DNS Firewall DHCP LDAP Mail Plone GroupwareSuite; do
  publish "$name" "groupware/suite/$name.cvl"
done
rm -f groupware/cvl.lock groupware/suite/cvl.lock
unset CVL_MIRRORS # the locks are made through examples/cvl.toml, as users read them
"$cvl" update-lock groupware/AcmeGroupware.cvl groupware/Groupware.cvl
"$cvl" update-lock groupware/suite/AcmeSuite.cvl groupware/suite/GroupwareSuite.cvl
echo "published into $ex/repos:"
ls "$ex/repos"
