#!/usr/bin/env bash
# The main job: the paper's six-appliance Groupware suite, applied on this
# machine's QEMU, and used. Builds cvl and the six appliances from their
# recipes (appliances/: Debian packages on real program disks, cached in
# /var/cache/cvl-test), publishes them into local repositories, plans and
# applies AcmeSuite inside a network namespace of its own (its VANs never
# touch this machine's network; the namespace plays the outside world on
# the firewall's public side), then uses it: the web page and the mail
# server through the firewall, and through `cvl exec` a DNS answer for
# every name and an LDAP search. Then it says where to look and how to stop.
# Usage (as root): scripts/demo.sh [WORKDIR]     (default: a fresh temporary folder)
# Afterwards:      scripts/demo.sh --stop WORKDIR
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ns=cvl-demo
# The outside world's address on the firewall's public network (the pool
# is 198.19.0.1-253: RFC 2544's benchmarking range, never routed).
outside=198.19.0.254
if [ "${1:-}" = "--stop" ]; then
  work=${2:?usage: demo.sh --stop WORKDIR}
  export CVL_HOME="$work/home"
  ip netns exec $ns "$root/target/release/cvl" stop "$work/AcmeSuite.cvl" --auto-approve --stop-timeout 20
  ip netns del $ns 2>/dev/null || true
  exit 0
fi
step() { printf '\n== %s\n' "$*"; }
if [ "$(id -u)" != 0 ]; then echo "demo.sh: run as root (VANs are bridges and taps)" >&2; exit 2; fi

step "installing what is missing (QEMU, mmdebstrap, e2fsprogs, busybox)"
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
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

step "building the six appliances from Debian packages (cached after the first time)"
t0=$(date +%s)
printf '%s\n' Firewall DHCP DNS LDAP Mail Plone |
  xargs -P 2 -I{} "$root/scripts/build-appliance.sh" "$root/appliances/{}" "$work/src/{}"
echo "built in $(( $(date +%s) - t0 )) s:"
for name in Firewall DHCP DNS LDAP Mail Plone; do
  printf '  %-8s %s program disk, %s packages\n' "$name" \
    "$(du -h --apparent-size "$work/src/$name/system.qcow2" | cut -f1)" \
    "$(sed -n '/^# packages/,/^# files/p' "$work/src/$name/manifest.txt" | grep -vc '^#')"
done

step "publishing the six appliances of the suite"
for name in Firewall DHCP DNS LDAP Mail Plone; do
  [ -d "repos/$name" ] || "$cvl" repo create "repos/$name" >/dev/null
  "$cvl" publish "repos/$name" "$work/src/$name/$name.cvl" | head -n 1
done
[ -d repos/GroupwareSuite ] || "$cvl" repo create repos/GroupwareSuite >/dev/null
mkdir -p "$work/src/GroupwareSuite"
cp "$root/examples/groupware/suite/GroupwareSuite.cvl" "$work/src/GroupwareSuite/"
"$cvl" publish repos/GroupwareSuite "$work/src/GroupwareSuite/GroupwareSuite.cvl" | head -n 1
cp "$root/examples/groupware/suite/AcmeSuite.cvl" .

step "the plan"
# The four sensitive parameters; in real use, from the user agent or CI secrets.
export CVL_SECRET_ACMESUITE_ROOTPW=demo-root CVL_SECRET_ACMESUITE_ROOTDNPASS=demo-dn
export CVL_SECRET_ACMESUITE_PROXYPW=demo-proxy CVL_SECRET_ACMESUITE_SMTPPW=demo-smtp
ip netns add $ns 2>/dev/null || true
ip netns exec $ns ip link set lo up
"$cvl" plan AcmeSuite.cvl > plan.txt && head -n 12 plan.txt

step "applying it on this machine (network namespace $ns)"
t0=$(date +%s)
ip netns exec $ns "$cvl" apply AcmeSuite.cvl --auto-approve
echo "from nothing to six appliances serving: $(( $(date +%s) - t0 )) s"

step "what runs"
ip netns exec $ns "$cvl" status

step "using it"
# The namespace is the outside world on the firewall's public network.
ip netns exec $ns ip addr replace "$outside/24" dev cvlpub
public=$(ip netns exec $ns "$cvl" plan AcmeSuite.cvl --format json |
  sed -n 's/.*"ethernet1": *{[^}]*"ip": *"\([0-9.]*\)".*/\1/p' | head -n 1)
[ -n "$public" ] || public=198.19.0.1
in_ns() { ip netns exec $ns "$@"; }
echo "-- the web page at http://$public/ (Plone, through the firewall):"
in_ns /bin/busybox wget -q -O - "http://$public/" | sed -n 's/.*<p>\(.*\)<\/p>.*/  \1/p' | sed 's/<[^>]*>//g' | head -n 1
echo "-- the mail server's greeting at $public:25 (through the firewall):"
printf 'QUIT\r\n' | in_ns /bin/busybox timeout 10 /bin/busybox nc "$public" 25 | head -n 1 | sed 's/^/  /'
echo "-- a port the firewall does not forward ($public:389) is closed:"
if in_ns /bin/busybox timeout 5 /bin/busybox nc "$public" 389 </dev/null >/dev/null 2>&1; then
  echo "  OPEN (unexpected)"
else
  echo "  closed"
fi
echo "-- DNS answers at d, asked inside it (cvl exec):"
for name in l m p; do
  in_ns "$cvl" exec AcmeSuite.cvl d -- nslookup "$name.acme.org" 127.0.0.1 2>/dev/null |
    awk '/^Name:/ { n = $2 } /^Address:/ && n { print "  " n " -> " $2; exit }'
done
echo "-- LDAP at l: the organization's entry (cvl exec l -- ldapsearch):"
in_ns "$cvl" exec AcmeSuite.cvl l -- ldapsearch -x -LLL -H ldap://localhost -b dc=acme,dc=org -s base o |
  sed 's/^/  /'

step "where to look next"
cat <<NEXT
Everything is in $work. Each appliance's folder (disks, console.log, QMP and guest-agent
sockets) is under $CVL_HOME/host/vms/AcmeSuite/; its recipe is in $root/appliances/.
Run commands in an appliance (inside the namespace):
  ip netns exec $ns env CVL_HOME=$CVL_HOME $cvl exec $work/AcmeSuite.cvl m -- ls -R /data/mail
Change a parameter in AcmeSuite.cvl (the domain, the organization) and run \`cvl plan\` /
\`cvl apply\` again with the same CVL_HOME and CVL_SECRET_* variables, inside \`ip netns exec
$ns\`: the appliances reconfigure their daemons without a restart.
Stop it all:  $root/scripts/demo.sh --stop $work
NEXT
