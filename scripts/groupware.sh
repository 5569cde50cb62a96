#!/usr/bin/env bash
# The main job today: the paper's Groupware appliances, published into local
# repositories, checked, locked and evaluated, as a publisher and a user would.
# Usage: scripts/groupware.sh [WORKDIR]   (default: a fresh temporary folder)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --release -q -p cvl --manifest-path "$root/Cargo.toml"
cvl="$root/target/release/cvl"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
cd "$work"
export CVL_HOME="$work/home"
# The paper's repositories live at virtualappliance.org; ours live here.
mirror="http://virtualappliance.org/=file://$work/repos/"
ex="$root/examples/groupware"
step() { printf '\n== %s\n' "$*"; }

step "format check of the examples"
"$cvl" fmt --check "$ex"

step "publish Figure 2's appliances and Figure 3's Groupware (DNS up to v3, Firewall up to v5, as Groupware pins them)"
# A publisher keeps each appliance in a folder: its CVL file, the VM
# description its `vm` names (the paper names VMware .vmx files; ours are
# QEMU descriptions under the same names) and a program disk.
stage() { # NAME FILE -> prints the staged CVL file
  local src="$work/src/$1" vm
  mkdir -p "$src"
  cp "$2" "$src/"
  vm=$(sed -n 's/.*vm = "\([^"]*\)".*/\1/p' "$2")
  if [ -n "$vm" ] && [ ! -f "$src/$vm" ]; then
    qemu-img create -q -f qcow2 "$src/system.qcow2" 64M
    printf 'memory = 128\nvcpus = 1\n\n[[disk]]\ndevice = "ide0:0"\nfile = "system.qcow2"\n' > "$src/$vm"
  fi
  echo "$src/$(basename "$2")"
}
publish() { # NAME FILE TIMES
  local staged
  staged=$(stage "$1" "$2")
  [ -d "repos/$1" ] || "$cvl" repo create "repos/$1"
  for _ in $(seq "$3"); do "$cvl" publish --mirror "$mirror" "repos/$1" "$staged"; done
}
publish DNS "$ex/DNS.cvl" 3
publish Firewall "$ex/Firewall.cvl" 5
publish OpenLDAP "$ex/OpenLDAP.cvl" 1
publish Groupware "$ex/Groupware.cvl" 1
"$cvl" repo log repos/DNS

step "the user's file (paper §5): check as deployed, lock, evaluate"
cp "$ex/AcmeGroupware.cvl" .
"$cvl" check --mirror "$mirror" --deploy AcmeGroupware AcmeGroupware.cvl
"$cvl" eval --mirror "$mirror" AcmeGroupware.cvl --object AcmeGroupware \
  --assume f.ethernet0.ip=10.0.1.1 --assume d.ethernet0.ip=10.0.1.2 --assume l.ethernet0.ip=10.0.1.3

step "the six-appliance suite (§6.1): 14 parameters for the whole suite"
top="$work"
mkdir -p "$work/suite" && cd "$work/suite"
work="$work/suite"
mirror="http://virtualappliance.org/=file://$work/repos/"
for name in Firewall DHCP DNS LDAP Mail Plone GroupwareSuite; do
  publish "$name" "$ex/suite/$name.cvl" 1
done
cp "$ex/suite/AcmeSuite.cvl" .
"$cvl" check --mirror "$mirror" --deploy AcmeSuite AcmeSuite.cvl
"$cvl" eval --mirror "$mirror" AcmeSuite.cvl --object AcmeSuite | grep -v '(allocated at deploy time)'

step "done: everything above is in $top"
