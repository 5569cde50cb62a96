#!/usr/bin/env bash
# The main job: the paper's six-appliance Groupware suite, applied on this
# machine's QEMU. Builds cvl and a tiny appliance guest from Debian
# packages, publishes the six appliances into local repositories, plans and
# applies AcmeSuite inside a network namespace of its own (its VANs never
# touch this machine's network), shows `cvl status` and what a guest
# received, and says how to stop it all.
# Usage (as root): scripts/demo.sh [WORKDIR]     (default: a fresh temporary folder)
# Afterwards:      scripts/demo.sh --stop WORKDIR
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ns=cvl-demo
if [ "${1:-}" = "--stop" ]; then
  work=${2:?usage: demo.sh --stop WORKDIR}
  export CVL_HOME="$work/home"
  ip netns exec $ns "$root/target/release/cvl" stop "$work/AcmeSuite.cvl" --auto-approve --stop-timeout 20
  ip netns del $ns 2>/dev/null || true
  exit 0
fi
step() { printf '\n== %s\n' "$*"; }
if [ "$(id -u)" != 0 ]; then echo "demo.sh: run as root (VANs are bridges and taps)" >&2; exit 2; fi

step "installing what is missing (QEMU, busybox, cpio)"
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  apt-get install -y -q --no-install-recommends --allow-downgrades "${need[@]}" qemu-system-x86 "qemu-utils=$v"
fi

cargo build --release -q -p cvl --manifest-path "$root/Cargo.toml"
cvl="$root/target/release/cvl"
work="$(realpath -m "${1:-$(mktemp -d)}")"
mkdir -p "$work"
cd "$work"
export CVL_HOME="$work/home"
# The work folder's workspace settings: the paper's URLs read from ./repos/.
printf '[mirrors]\n"http://virtualappliance.org/" = "repos/"\n' > cvl.toml

step "building the appliance guest (Debian cloud kernel, busybox, qemu-guest-agent)"
"$root/scripts/build-guest.sh" "$root/target/cvl-guest"

step "publishing the six appliances of the suite"
for name in Firewall DHCP DNS LDAP Mail Plone; do
  src="$work/src/$name"
  mkdir -p "$src"
  cp "$root/examples/groupware/suite/$name.cvl" "$src/"
  vm=$(sed -n 's/.*vm = "\([^"]*\)".*/\1/p' "$src/$name.cvl")
  cp "$root/target/cvl-guest/vmlinuz" "$root/target/cvl-guest/initrd.img" "$src/"
  [ -f "$src/system.qcow2" ] || qemu-img create -q -f qcow2 "$src/system.qcow2" 8M
  cat > "$src/$vm" <<DESC
memory = 192
vcpus = 1

[[disk]]
device = "virtio0"
file = "system.qcow2"

[boot]
kernel = "vmlinuz"
initrd = "initrd.img"
cmdline = "console=ttyS0 quiet"
DESC
  [ -d "repos/$name" ] || "$cvl" repo create "repos/$name" >/dev/null
  "$cvl" publish "repos/$name" "$src/$name.cvl"
done
[ -d repos/GroupwareSuite ] || "$cvl" repo create repos/GroupwareSuite >/dev/null
mkdir -p "$work/src/GroupwareSuite"
cp "$root/examples/groupware/suite/GroupwareSuite.cvl" "$work/src/GroupwareSuite/"
"$cvl" publish repos/GroupwareSuite "$work/src/GroupwareSuite/GroupwareSuite.cvl"
cp "$root/examples/groupware/suite/AcmeSuite.cvl" .

step "the plan"
# The four sensitive parameters; in real use, from the user agent or CI secrets.
export CVL_SECRET_ACMESUITE_ROOTPW=demo-root CVL_SECRET_ACMESUITE_ROOTDNPASS=demo-dn
export CVL_SECRET_ACMESUITE_PROXYPW=demo-proxy CVL_SECRET_ACMESUITE_SMTPPW=demo-smtp
ip netns add $ns 2>/dev/null || true
ip netns exec $ns ip link set lo up
"$cvl" plan AcmeSuite.cvl > plan.txt && head -n 12 plan.txt

step "applying it on this machine (network namespace $ns)"
ip netns exec $ns "$cvl" apply AcmeSuite.cvl --auto-approve

step "what runs"
ip netns exec $ns "$cvl" status

step "where to look next"
cat <<NEXT
Everything is in $work. Each appliance's folder (disks, console.log, QMP and guest-agent
sockets) is under $CVL_HOME/host/vms/AcmeSuite/. What DNS received at boot:
  CVL_HOME=$CVL_HOME $cvl eval AcmeSuite.cvl --object AcmeSuite   (the values, before allocation)
  the guest's /run/cvl/params, through its agent: $CVL_HOME/host/vms/AcmeSuite/d/qga.sock
Change a parameter in AcmeSuite.cvl and run \`cvl plan\` / \`cvl apply\` again (with the same
CVL_HOME and CVL_SECRET_* variables; cvl.toml holds the mirrors, inside \`ip netns exec $ns\`).
Stop it all:  $root/scripts/demo.sh --stop $work
NEXT
