#!/usr/bin/env bash
# The main job: the paper's six-appliance Groupware suite, applied on this
# machine's QEMU, and used. Builds cvl and the six appliances from their
# recipes (appliances/: Debian packages on real program disks, cached in
# /var/cache/cvl-test), publishes them into local repositories, plans and
# applies AcmeSuite inside a network namespace of its own (its VANs never
# touch this machine's network; the namespace plays the outside world on
# the firewall's public side), then uses it: the web page and the mail
# server through the firewall, a user added on LDAP who is sent a mail
# from the outside world (SMTP with STARTTLS, the suite's CA trusted after
# fetching it from LDAP with `cvl exec`) and reads it over IMAP with STARTTLS,
# and through `cvl exec` every name DNS
# serves resolved on another member (d is every member's resolver), a name
# outside forwarded to the outside world's name server, and an LDAP search. Every check says what it got;
# one that fails says so, the rest still run, and the demo exits 1 at the
# end naming what failed. Then it says where to look and how to stop.
#
# Usage (as root): scripts/demo.sh [--profile PROFILE] [WORKDIR]
#                  (default: the release build, a fresh temporary folder;
#                  tests/demo.rs runs it with `--profile dev`, the build the
#                  tests already have)
# Afterwards:      scripts/demo.sh --stop WORKDIR
#
# No step depends on a pipeline's reader staying open: output is captured
# whole into variables and read from there (a `| head` under pipefail
# fails whenever the writer outlives the reader).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ns=cvl-demo
# The outside world's address on the firewall's public network (the pool
# is 198.19.0.1-253: RFC 2544's benchmarking range, never routed).
outside=198.19.0.254

# Kills what is left in the namespace and deletes it.
remove_namespace() {
  local pids
  pids=$(ip netns pids $ns 2>/dev/null || true)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  fi
  ip netns del $ns 2>/dev/null || true
}

if [ "${1:-}" = "--stop" ]; then
  work=${2:?usage: demo.sh --stop WORKDIR}
  export CVL_HOME="$work/home"
  status=0
  # The binary the demo ran (its build profile's).
  cvl=$(cat "$work/.cvl" 2>/dev/null || echo "$root/target/release/cvl")
  if [ -e "/run/netns/$ns" ] && [ -f "$work/AcmeSuite.cvl" ]; then
    ip netns exec $ns "$cvl" stop "$work/AcmeSuite.cvl" --auto-approve \
      --stop-timeout 20 || status=$?
  fi
  remove_namespace
  exit $status
fi

profile=release
if [ "${1:-}" = "--profile" ]; then
  profile=${2:?usage: demo.sh --profile PROFILE [WORKDIR]}
  shift 2
fi
step() { printf '\n== %s\n' "$*"; }
# The checks that failed, named at the end.
failed=()
ok() { printf '  ok: %s\n' "$*"; }
fail() { printf '  FAILED: %s\n' "$*"; failed+=("$*"); }
# Prints captured text indented (nothing reads past its end).
indent() { [ -z "$1" ] || printf '%s\n' "$1" | sed 's/^/    /'; }

if [ "$(id -u)" != 0 ]; then echo "demo.sh: run as root (VANs are bridges and taps)" >&2; exit 2; fi
if [ -n "$(ip netns pids $ns 2>/dev/null || true)" ]; then
  echo "demo.sh: a demo already runs in the network namespace $ns: stop it first" \
    "(scripts/demo.sh --stop WORKDIR, the folder it printed)" >&2
  exit 2
fi

step "installing what is missing (QEMU, mmdebstrap, e2fsprogs, busybox, dnsmasq, curl, openssl)"
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  apt-get install -y -q --no-install-recommends --allow-downgrades "${need[@]}" qemu-system-x86 "qemu-utils=$v"
fi

cargo build --profile "$profile" -q -p cvl --manifest-path "$root/Cargo.toml"
# Where cargo put it ($CARGO_TARGET_DIR, a cargo config, or target/), as
# scripts/build-deb.sh finds it.
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
case $profile in dev|test) cvl="$target_dir/debug/cvl" ;; *) cvl="$target_dir/$profile/cvl" ;; esac
[ -x "$cvl" ] || { echo "demo: cargo built no $cvl" >&2; exit 1; }
work="$(realpath -m "${1:-$(mktemp -d)}")"
mkdir -p "$work"
cd "$work"
echo "$cvl" > .cvl
export CVL_HOME="$work/home"
# The work folder's workspace settings: the paper's URLs read from ./repos/.
printf '[mirrors]\n"http://virtualappliance.org/" = "repos/"\n' > cvl.toml

step "building the six appliances from Debian packages (cached after the first time)"
t0=$(date +%s)
printf '%s\n' Firewall DHCP DNS LDAP Mail Plone |
  xargs -P 2 -I{} "$root/scripts/build-appliance.sh" "$root/appliances/{}" "$work/src/{}"
echo "built in $(( $(date +%s) - t0 )) s:"
for name in Firewall DHCP DNS LDAP Mail Plone; do
  size=$(du -h --apparent-size "$work/src/$name/system.qcow2" | cut -f1)
  packages=$(sed -n '/^# packages/,/^# files/p' "$work/src/$name/manifest.txt" | grep -vc '^#')
  printf '  %-8s %s program disk, %s packages\n' "$name" "$size" "$packages"
done

step "publishing the six appliances of the suite, signed"
# A publisher signs what it publishes (docs/repositories.md). This key is a
# throwaway made for the demo, its passphrase random and forgotten when the
# demo ends: a real publisher keeps its key and passphrase apart, offline.
export CVL_KEY_PASSPHRASE
CVL_KEY_PASSPHRASE=$(head -c 18 /dev/urandom | base64)
rm -f publisher.key
keyid=$("$cvl" key generate publisher.key 2>/dev/null)
echo "  a throwaway signing key for this demo: $work/publisher.key (key id ${keyid:0:16}...)"
# The first line of a command's output (captured whole: the command is
# never cut off mid-write).
first_line() { local out; out=$("$@" 2>&1); printf '  %s\n' "${out%%$'\n'*}"; }
# Made anew each run (a run before had another key): what this machine
# pinned of the old ones goes with them.
rm -rf repos "$CVL_HOME/tuf" && rm -f cvl.lock
for name in Firewall DHCP DNS LDAP Mail Plone; do
  "$cvl" repo create "repos/$name" --key publisher.key 2>/dev/null
  first_line "$cvl" publish "repos/$name" "$work/src/$name/$name.cvl" --key publisher.key
done
"$cvl" repo create repos/GroupwareSuite --key publisher.key 2>/dev/null
mkdir -p "$work/src/GroupwareSuite"
cp "$root/examples/groupware/suite/GroupwareSuite.cvl" "$work/src/GroupwareSuite/"
first_line "$cvl" publish repos/GroupwareSuite "$work/src/GroupwareSuite/GroupwareSuite.cvl" \
  --key publisher.key
unset CVL_KEY_PASSPHRASE
cp "$root/examples/groupware/suite/AcmeSuite.cvl" .
# The suite's DNS forwards names outside its domain to `forwarders`: here
# the outside world's name server (started below), the only one this
# namespace has.
sed -i "s/forwarders = \"[^\"]*\"/forwarders = \"$outside\"/" AcmeSuite.cvl

step "the plan"
# The four sensitive parameters; in real use, from the user agent or CI secrets.
export CVL_SECRET_ACMESUITE_ROOTPW=demo-root CVL_SECRET_ACMESUITE_ROOTDNPASS=demo-dn
export CVL_SECRET_ACMESUITE_PROXYPW=demo-proxy CVL_SECRET_ACMESUITE_SMTPPW=demo-smtp
ip netns add $ns 2>/dev/null || true
ip netns exec $ns ip link set lo up
"$cvl" plan AcmeSuite.cvl > plan.txt
sed -n '1,12p' plan.txt

step "applying it on this machine (network namespace $ns)"
t0=$(date +%s)
ip netns exec $ns "$cvl" apply AcmeSuite.cvl --auto-approve
echo "from nothing to six appliances serving: $(( $(date +%s) - t0 )) s"

step "what runs"
ip netns exec $ns "$cvl" status || fail "cvl status reports drift (above)"

step "using it"
in_ns() { ip netns exec $ns "$@"; }
# The namespace is the outside world on the firewall's public network.
in_ns ip addr replace "$outside/24" dev cvlpub
# Its name server, the suite's forwarder: it knows example.net (every name
# there is the outside world itself) and refuses the rest at once.
in_ns dnsmasq --port=53 --listen-address="$outside" --bind-interfaces --no-resolv \
  --no-hosts --address="/example.net/$outside" --pid-file="$work/outside-dns.pid"
plan_json=$(in_ns "$cvl" plan AcmeSuite.cvl --format json)
public=$(sed -n 's/.*"ethernet1": *{[^}]*"ip": *"\([0-9.]*\)".*/\1/p' <<<"$plan_json")
public=${public%%$'\n'*}
[ -n "$public" ] || public=198.19.0.1
domain=acme.org

echo "-- the web page at http://$public/ (Plone, through the firewall):"
page=$(in_ns /bin/busybox timeout 20 /bin/busybox wget -q -O - "http://$public/" 2>&1) || true
text=$(sed -n 's/.*<p>\(.*\)<\/p>.*/\1/p' <<<"$page" | sed 's/<[^>]*>//g')
indent "${text%%$'\n'*}"
if grep -q "id=\"domain\">$domain<" <<<"$page"; then
  ok "the page names the domain $domain"
else
  fail "the web page at http://$public/ does not name $domain (got: ${page:0:200})"
fi

echo "-- the mail server's greeting at $public:25 (through the firewall):"
# QUIT is sent at once; nc reads until the server closes after its 221.
smtp=$(in_ns /bin/busybox timeout 10 /bin/busybox nc "$public" 25 <<<$'QUIT\r' 2>&1) || true
greeting=${smtp%%$'\n'*}
greeting=${greeting%$'\r'}
indent "$greeting"
if [[ $greeting == "220 "*"$domain"* ]]; then
  ok "a 220 greeting naming $domain"
else
  fail "no 220 greeting from $public:25 (got: ${smtp:0:200})"
fi

echo "-- a user of the suite: dana, added on LDAP (her password on stdin, cvl exec -i l -- cvl-adduser):"
dana=demo-dana-$RANDOM$RANDOM
added=$(printf '%s\n' "$dana" | in_ns "$cvl" exec -i AcmeSuite.cvl l -- cvl-adduser dana 2>&1) || true
indent "$added"
grep -q "added uid=dana" <<<"$added" && ok "dana is in the directory" || fail "cvl-adduser dana: $added"

echo "-- the suite's CA (on LDAP's data disk), fetched to trust it (cvl exec l -- cat /data/ca/ca.pem):"
in_ns "$cvl" exec AcmeSuite.cvl l -- cat /data/ca/ca.pem > suite-ca.pem 2>&1 || true
indent "$(openssl x509 -in suite-ca.pem -noout -subject -nameopt RFC2253 2>&1 || true)"
mail_cert=$(in_ns "$cvl" exec AcmeSuite.cvl m -- cat /data/tls/cert.pem 2>&1) || true
if openssl verify -CAfile suite-ca.pem <(printf '%s\n' "$mail_cert") >/dev/null 2>&1; then
  ok "Mail's certificate ($(openssl x509 -noout -subject -nameopt RFC2253 <<<"$mail_cert")) is the CA's"
else
  fail "Mail's certificate is not signed by the suite's CA: ${mail_cert:0:200}"
fi
# A mail client in the outside world: curl, trusting the suite's CA,
# reaching m.DOMAIN at the firewall's public address.
mail_client() { # PORT ARGS...
  local port=$1
  shift
  in_ns curl -sS --max-time 30 --cacert suite-ca.pem --resolve "m.$domain:$port:$public" "$@"
}

echo "-- a mail to dana@$domain from the outside world: SMTP with STARTTLS through the firewall:"
marker="demo-mail-$RANDOM$RANDOM"
message=$(printf 'From: someone@example.net\r\nTo: dana@%s\r\nSubject: %s\r\n\r\nHello Dana (%s).\r\n' "$domain" "$marker" "$marker")
# Mail reads the directory's users every 5 s: dana is a recipient within
# seconds of being added.
sent=no
for _ in $(seq 20); do
  if said=$(mail_client 25 --ssl-reqd "smtp://m.$domain:25" --mail-from someone@example.net \
    --mail-rcpt "dana@$domain" --upload-file - <<<"$message" 2>&1); then
    sent=yes
    break
  fi
  sleep 1
done
[ $sent = yes ] && ok "accepted over STARTTLS (m.$domain's certificate verified against the suite's CA)" ||
  fail "SMTP with STARTTLS to dana@$domain: $said"

echo "-- dana reads it over IMAP with STARTTLS through the firewall (her password in curl's config, on stdin):"
read_mail=$(printf 'user = "dana:%s"\n' "$dana" |
  mail_client 143 --ssl-reqd -K - "imap://m.$domain:143/INBOX;MAILINDEX=1" 2>&1) || true
indent "$(grep -E '^(Subject|Received|	by)' <<<"$read_mail" || true)"
grep -q "Hello Dana ($marker)" <<<"$read_mail" && ok "dana read her mail" ||
  fail "IMAP with STARTTLS: dana's mail is not there (got: ${read_mail:0:300})"

echo "-- a port the firewall does not forward ($public:389) is closed:"
if in_ns /bin/busybox timeout 5 /bin/busybox nc "$public" 389 </dev/null >/dev/null 2>&1; then
  fail "$public:389 is open through the firewall"
else
  ok "closed"
fi

echo "-- DNS: the firewall resolves every name d serves (dnshosts) through d, its resolver (cvl exec f -- getent hosts):"
dnshosts=$(in_ns "$cvl" exec AcmeSuite.cvl d -- cvl-param -m dnshosts name ip 2>&1) || {
  fail "cannot read d's dnshosts: $dnshosts"
  dnshosts=
}
[ -n "$dnshosts" ] || fail "d serves no names (dnshosts is empty)"
while read -r name ip; do
  [ -n "$name" ] || continue
  answer=$(in_ns "$cvl" exec AcmeSuite.cvl f -- getent hosts "$name.$domain" 2>&1) || true
  got=$(awk 'NR == 1 { print $1 }' <<<"$answer")
  if [ "$got" = "$ip" ]; then
    ok "$name.$domain -> $got"
  else
    fail "DNS: $name.$domain should be $ip, got '${got:-no answer}'"
  fi
done <<<"$dnshosts"

echo "-- a name outside the domain: p resolves www.example.net through d, which forwards it:"
answer=$(in_ns "$cvl" exec AcmeSuite.cvl p -- getent hosts www.example.net 2>&1) || true
got=$(awk 'NR == 1 { print $1 }' <<<"$answer")
if [ "$got" = "$outside" ]; then
  ok "www.example.net -> $got (the outside world's name server)"
else
  fail "DNS: www.example.net should be $outside through the forwarder, got '${got:-no answer}'"
fi

echo "-- LDAP at l: the organization's entry (cvl exec l -- ldapsearch):"
entry=$(in_ns "$cvl" exec AcmeSuite.cvl l -- \
  ldapsearch -x -LLL -H ldap://localhost -b dc=acme,dc=org -s base o 2>&1) || true
indent "$entry"
if grep -qx "o: Acme" <<<"$entry"; then
  ok "the entry dc=acme,dc=org names o: Acme"
else
  fail "LDAP: no entry dc=acme,dc=org with o: Acme"
fi

echo "-- each appliance's own checks (its recipe's /etc/cvl/test.d/, cvl exec PATH -- cvl-check):"
for c in f h d l m p; do
  if checks=$(in_ns "$cvl" exec AcmeSuite.cvl "$c" -- cvl-check 2>&1); then
    ok "$c: $(grep -c '^ok ' <<<"$checks") check(s) passed"
  else
    indent "$checks"
    fail "$c: a check failed"
  fi
done

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

if [ ${#failed[@]} -gt 0 ]; then
  printf '\nThe demo ran, but %d check(s) failed:\n' "${#failed[@]}" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
printf '\nEvery check passed.\n'
