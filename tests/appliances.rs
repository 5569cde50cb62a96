//! The Groupware suite's real appliances (appliances/: Debian packages on
//! real program disks) applied on this machine in a network namespace the
//! test creates, then used as their users would: from the namespace as the
//! outside world, through the firewall, the web page and the mail server;
//! mail sent with STARTTLS and read back over IMAP with STARTTLS (Mail's
//! certificate fetched with `cvl exec`, as a user would trust it); from
//! inside the VAN (`cvl exec`), DNS, LDAP and DHCP. Then an update
//! that keeps LDAP's data and migrates its format, a resend that
//! reconfigures running daemons without a restart, and hostile values that
//! stay text. The status page (`cvl utility run --http`) is watched in
//! headless Chromium meanwhile: the six running, a box per appliance in
//! the VAN's picture, the LDAP update pending and then done, without a
//! reload (screenshots under target/status-page/).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cvl_e2e::browser::{screenshots, Browser};
use cvl_e2e::*;

const NS: &str = "cvl-e2e-real";
/// The outside world's address on the firewall's public network (the
/// public pool is 198.19.0.1-253).
const OUTSIDE: &str = "198.19.0.254/24";
/// Its name server, the suite's forwarder.
const OUTSIDE_DNS: &str = "198.19.0.254";

#[test]
fn the_real_suite_serves_keeps_its_data_and_reconfigures() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let built = real_appliances();
    let (_tmp, u, _ns) = bare(NS);
    for name in ["Firewall", "DHCP", "DNS", "LDAP", "Mail", "Plone"] {
        u.publish_built(name, &built[name]);
    }
    u.publish("GroupwareSuite", &suite_text("GroupwareSuite"));
    // Names outside the domain go to the outside world's name server (the
    // test's, at its address on the public network).
    std::fs::write(
        u.dir.join("AcmeSuite.cvl"),
        suite_text("AcmeSuite").replace("\"192.0.2.53\"", &format!("\"{OUTSIDE_DNS}\"")),
    )
    .unwrap();

    // From nothing to six appliances whose services run.
    let started = Instant::now();
    let said = apply_suite(&u);
    let apply_s = started.elapsed().as_secs_f64();
    eprintln!("apply of the real suite: {apply_s:.1} s\n{said}");
    assert!(said.contains("Applied 6 action(s) to AcmeSuite"), "{said}");
    for line in said.lines().filter(|l| l.contains("ready after")) {
        eprintln!("  {line}");
        // Each kit kernel boots unpacked from its bzImage, by PVH (the
        // host agent's pvh.rs): QEMU's -kernel is the host's ELF.
        let pid = line
            .split("(pid ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .unwrap_or_else(|| panic!("no pid in {line}"));
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let argv: Vec<&[u8]> = argv.split(|b| *b == 0).collect();
        let kernel = argv
            .iter()
            .position(|a| *a == b"-kernel")
            .and_then(|i| argv.get(i + 1))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_else(|| panic!("no -kernel for {line}"));
        assert!(
            kernel.contains("/kernels/") && kernel.ends_with(".elf"),
            "{line}: QEMU boots {kernel}, not the unpacked kernel"
        );
    }
    for c in ["f", "h", "d", "l", "m", "p"] {
        let times = u.exec_ok(c, &["cat", "/run/cvl/boot-times"]);
        eprintln!(
            "  {c}'s boot (s since its kernel started): {}",
            times.replace('\n', "; ")
        );
    }
    for c in ["l", "m"] {
        let trace = u.exec_ok(c, &["cat", "/run/cvl/start-trace"]);
        eprintln!(
            "  {c}'s start hook (s since boot): {}",
            trace.replace('\n', "; ")
        );
    }

    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
    let ip = |c: &str, i: &str| {
        plan["allocations"][c]["interfaces"][i]["ip"]
            .as_str()
            .unwrap_or_else(|| panic!("{c}.{i} has no address: {plan:#}"))
            .to_string()
    };
    let public = ip("f", "ethernet1");
    run(&["ip", "-n", NS, "addr", "replace", OUTSIDE, "dev", "cvlpub"]);
    let _forwarder = Forwarder::start(NS, OUTSIDE_DNS, "outside.test", "203.0.113.7");

    // The outside world: the page and the mail server through the firewall,
    // nothing else.
    let page = http_get(&public, "/");
    assert!(
        page.contains("acme.org") && page.contains("Acme"),
        "the page at {public} does not name the organization and domain:\n{page}"
    );
    // The domain's users, added on LDAP (the password on stdin): Mail
    // accepts mail for them within seconds, and refuses anyone else at
    // RCPT; LDAP binds them with their password and hides them from
    // anonymous readers.
    for user in ["alice", "bob", "carol"] {
        let said = add_user(&u, user);
        assert!(
            said.contains(&format!("added uid={user},ou=people,dc=acme,dc=org")),
            "{said}"
        );
    }
    let (code, _, err) = add_user_raw(&u, "alice");
    assert_ne!(code, 0, "alice was added twice");
    assert!(err.contains("alice exists already"), "{err}");
    let (code, _, err) = add_user_raw(&u, "Bad/Name");
    assert_eq!(code, 2, "{err}");
    let me = u.exec_with_stdin(
        "l",
        &[
            "ldapwhoami",
            "-x",
            "-H",
            "ldap://localhost",
            "-D",
            "uid=alice,ou=people,dc=acme,dc=org",
            "-y",
            "/proc/self/fd/0",
        ],
        "pw-alice",
    );
    assert_eq!(me.0, 0, "alice cannot bind with her password: {me:?}");
    let (code, out, err) = ldap_search_raw(&u, "dc=acme,dc=org", &["(uid=alice)"]);
    assert!(
        code == 0 && !out.contains("alice"),
        "anonymous reads people: {out}{err}"
    );
    let waited = wait_for_recipient(&u, "carol@acme.org");
    eprintln!("users added on LDAP: accepted by Mail {waited:.1} s later");
    let greeting = send_mail(&public, "alice@acme.org", "CVL-MAIL-1");
    assert!(greeting.contains("m.acme.org"), "{greeting}");
    // Postfix accepts, then delivers from its queue a moment later.
    let started = Instant::now();
    loop {
        let (_, mailbox, _) = u.exec("m", &["sh", "-c", "cat /data/mail/alice/new/*"]);
        if mailbox.contains("CVL-MAIL-1") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "CVL-MAIL-1 is not in alice's maildir: {mailbox}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // With STARTTLS, as a mail client would: the suite's CA (on LDAP's
    // data disk, fetched with cvl exec as a user would) verifies Mail's
    // certificate for m.acme.org, whose subject is Figure 5's, on the SMTP
    // session and the IMAP one through the firewall; bob reads with his
    // password what was sent to him.
    let ca = u.exec_ok("l", &["cat", "/data/ca/ca.pem"]);
    let (cert, subject) = mail_certificate(&u);
    for part in [
        "CN=m.acme.org",
        "O=Acme",
        "OU=IT",
        "L=Stanford",
        "C=US",
        "emailAddress=admin@acme.org",
    ] {
        assert!(subject.contains(part), "{part} is not in {subject}");
    }
    let tls = Mailer::new(&u, &public, "m.acme.org", &ca);
    tls.send("bob@acme.org", "CVL-MAIL-TLS-1");
    let inbox = tls.inbox("bob", "pw-bob", &["CVL-MAIL-TLS-1"]);
    assert!(
        inbox.contains("with ESMTPS"),
        "not received over TLS: {inbox}"
    );
    let (code, _, err) = tls.imap("bob", "wrong", "INBOX;MAILINDEX=1", true);
    assert_eq!(code, 67, "a wrong password: {err}");
    let (code, _, err) = tls.imap("bob", "pw-bob", "INBOX;MAILINDEX=1", false);
    assert_ne!(code, 0, "IMAP took a password without STARTTLS: {err}");
    // LDAPS, from Mail (which holds the CA it was signed by): l's own
    // certificate verifies for l.acme.org.
    let ldaps = u.exec_ok(
        "m",
        &[
            "env",
            "LDAPTLS_CACERT=/data/tls/ca.pem",
            "ldapsearch",
            "-x",
            "-LLL",
            "-H",
            "ldaps://l.acme.org",
            "-b",
            "dc=acme,dc=org",
            "-s",
            "base",
            "dn",
        ],
    );
    assert!(ldaps.contains("dn: dc=acme,dc=org"), "{ldaps}");
    let refused = rcpt(&public, "mallory@acme.org");
    assert!(
        refused.starts_with('5'),
        "a mail to an unknown user was not refused at RCPT: {refused}"
    );
    let closed = in_netns(NS, || {
        TcpStream::connect_timeout(
            &format!("{public}:389").parse().unwrap(),
            Duration::from_secs(5),
        )
    });
    assert!(
        closed.is_err(),
        "port 389 is open from outside, though no service names it"
    );

    // Inside the VAN: every member resolves names through d (the network
    // makes d's address its resolver and the domain its search domain),
    // d answers for the domain with authority, LDAP's base, a DHCP lease.
    for (c, on) in [("d", "p"), ("l", "p"), ("m", "p"), ("p", "f")] {
        let answer = u.exec_ok(on, &["getent", "hosts", &format!("{c}.acme.org")]);
        assert!(
            answer.contains(&ip(c, "ethernet0")),
            "{on} resolves {c}.acme.org through d:\n{answer}"
        );
    }
    let short = u.exec_ok("p", &["getent", "hosts", "m"]);
    assert!(
        short.contains(&ip("m", "ethernet0")) && short.contains("m.acme.org"),
        "p resolves m in its search domain:\n{short}"
    );
    let outside = u.exec_ok("p", &["getent", "hosts", "www.outside.test"]);
    assert!(
        outside.contains("203.0.113.7"),
        "d did not forward www.outside.test to {OUTSIDE_DNS}: {outside}"
    );
    // From the test's own place in the VAN (an address on its bridge): a
    // query without recursion gets an authoritative answer, a missing name
    // an authoritative NXDOMAIN.
    let dns = ip("d", "ethernet0");
    van_probe(NS, &dns);
    let answer = dig(NS, &dns, "m.acme.org");
    assert!(
        answer.contains(" aa") && answer.contains(&ip("m", "ethernet0")),
        "d's answer for m.acme.org is not authoritative:\n{answer}"
    );
    let missing = dig(NS, &dns, "nobody.acme.org");
    assert!(
        missing.contains("NXDOMAIN") && missing.contains(" aa"),
        "{missing}"
    );
    // Every appliance's own checks (files/etc/cvl/test.d/ in its recipe,
    // run by the guest kit's cvl-check) pass; a broken one is named.
    for c in ["f", "h", "d", "l", "m", "p"] {
        let (code, out, err) = u.exec(c, &["cvl-check"]);
        assert!(
            code == 0 && out.starts_with("ok "),
            "{c}'s checks: {out}{err}"
        );
        eprintln!("{c}'s checks:\n{out}");
    }
    u.exec_ok("p", &["sh", "-c", "kill $(cat /run/lighttpd.pid)"]);
    let (code, out, _) = u.exec("p", &["cvl-check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL page"), "{out}");
    u.exec_ok("p", &["/etc/cvl/start"]);
    assert_eq!(u.exec("p", &["cvl-check"]).0, 0);
    let base = ldap_search(&u, "dc=acme,dc=org", &["-s", "base"]);
    assert!(
        base.contains("dn: dc=acme,dc=org") && base.contains("o: Acme"),
        "{base}"
    );
    // Backed up live while it serves: its data file system (ext4 on the
    // data disk) frozen through its guest agent for an instant, then
    // thawed (it still answers).
    let store = u.dir.join("backups");
    let made: serde_json::Value = serde_json::from_str(&u.ok(&[
        "backup",
        "AcmeSuite.cvl",
        "l",
        "--to",
        store.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    let point = &made[0]["backups"][0];
    assert_eq!(point["consistency"], "frozen", "{made:#}");
    eprintln!(
        "live backup of l: writes blocked {} ms (the freeze's flush {} ms)",
        point["frozen_ms"], point["flush_ms"]
    );
    let again = ldap_search(&u, "dc=acme,dc=org", &["-s", "base"]);
    assert_eq!(again, base, "l after its backup");
    // Backed up while the guest writes without a pause (a file rewritten
    // and synced in a loop): the restore point, read whole by qemu-img
    // through its chain, is a file system e2fsck accepts as it is.
    u.exec_ok(
        "l",
        &[
            "sh",
            "-c",
            "setsid sh -c 'while :; do dd if=/dev/urandom of=/data/churn bs=64k count=32 \
             conv=fsync 2>/dev/null; done' </dev/null >/dev/null 2>&1 & echo $! > /run/churn.pid",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let made: serde_json::Value = serde_json::from_str(&u.ok(&[
        "backup",
        "AcmeSuite.cvl",
        "l",
        "--to",
        store.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    u.exec_ok("l", &["sh", "-c", "kill $(cat /run/churn.pid)"]);
    let point = &made[0]["backups"][0];
    assert_eq!(point["consistency"], "frozen", "{made:#}");
    assert_eq!(point["kind"], "incremental", "{made:#}");
    eprintln!(
        "live backup of l while it writes: writes blocked {} ms (the freeze's flush {} ms)",
        point["frozen_ms"], point["flush_ms"]
    );
    let device: String = point["device"]
        .as_str()
        .unwrap()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let chain = store
        .join("AcmeSuite/l")
        .join(device)
        .join(point["file"].as_str().unwrap());
    let raw = u.dir.join("l-data.raw");
    run(&[
        "qemu-img",
        "convert",
        "-O",
        "raw",
        chain.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    let fsck = std::process::Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&raw)
        .output()
        .expect("e2fsck (e2fsprogs) is installed");
    assert!(
        fsck.status.success(),
        "e2fsck of the restore point taken under writes: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    std::fs::remove_file(&raw).unwrap();
    // `cvl backup` (and its host agent) killed while it holds the guest's
    // file systems frozen: the next status request (`cvl status`, the
    // service's survey) thaws them, and the store is as it was.
    let points = |u: &Utility| -> serde_json::Value {
        serde_json::from_str(&u.ok(&[
            "backup",
            "list",
            "AcmeSuite",
            "l",
            "--to",
            store.to_str().unwrap(),
            "--format",
            "json",
        ]))
        .unwrap()
    };
    let before = points(&u);
    let mark = {
        let vms = u.vm_dir("l");
        let root = vms.parent().unwrap().parent().unwrap().parent().unwrap();
        root.join("locks/AcmeSuite/l.freezing")
    };
    let freeze_status = || -> String {
        u.agent("l")
            .execute(&cvl_executor::qmp::cmd::GuestFsfreezeStatus {})
            .unwrap()
    };
    // The kill must land while the guest is frozen: a freeze lasts the
    // flush of the disk's dirty pages (tens of ms here), too short to aim a
    // kill at on a loaded machine. So the freeze is made long: the data
    // disk's writes throttled to 1 MiB/s in QEMU and 3 MiB left dirty in
    // the guest's page cache, the flush takes about 3 s.
    let throttle = |bps_wr: u64| {
        let mut qmp = cvl_executor::qmp::Qmp::connect(
            &u.vm_dir("l").join("qmp.sock"),
            Duration::from_secs(10),
        )
        .unwrap();
        qmp.execute(&SetIoThrottle {
            // The drive QEMU names after the data disk's file.
            device: cvl_executor::protocol::data_disk_file(point["device"].as_str().unwrap())
                .trim_end_matches(".qcow2")
                .to_string(),
            bps: 0,
            bps_rd: 0,
            bps_wr,
            iops: 0,
            iops_rd: 0,
            iops_wr: 0,
        })
        .unwrap();
    };
    throttle(1 << 20);
    u.exec_ok(
        "l",
        &[
            "sh",
            "-c",
            "dd if=/dev/urandom of=/data/dirty bs=64k count=48 2>/dev/null",
        ],
    );
    let mut backup = u.command(&["backup", "AcmeSuite", "l", "--to", store.to_str().unwrap()]);
    std::os::unix::process::CommandExt::process_group(&mut backup, 0);
    let mut child = backup
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waiting = Instant::now();
    while !mark.exists() && waiting.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(mark.exists(), "cvl backup never began to freeze l");
    // Long enough for the freeze request to reach the guest, far shorter
    // than its flush.
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert!(mark.exists(), "the freeze ended before the kill landed");
    assert_eq!(
        freeze_status(),
        "frozen",
        "the killed backup's freeze did not hold"
    );
    throttle(0);
    let thawing = Instant::now();
    u.ok(&["status", "AcmeSuite.cvl"]);
    assert_eq!(freeze_status(), "thawed", "cvl status left l frozen");
    eprintln!(
        "a guest left frozen by a killed backup, thawed by cvl status in {:.2} s",
        thawing.elapsed().as_secs_f64()
    );
    assert!(!mark.exists());
    u.exec_ok(
        "l",
        &[
            "sh",
            "-c",
            "rm /data/dirty && echo thawed > /data/after-kill && sync",
        ],
    );
    assert_eq!(points(&u), before, "the store's restore points changed");
    let said = u.ok(&[
        "backup",
        "verify",
        "AcmeSuite",
        "l",
        "--to",
        store.to_str().unwrap(),
    ]);
    assert!(said.contains("restore points are whole"), "{said}");
    let lease = u.exec_ok(
        "p",
        &[
            "sh",
            "-c",
            "printf '#!/bin/sh\\n[ \"$1\" = bound ] && echo \"lease ip=$ip domain=$domain dns=$dns router=$router\"\\nexit 0\\n' > /tmp/show \
             && chmod +x /tmp/show && udhcpc -i \"$(cvl-iface ethernet0)\" -n -q -f -t 5 -T 2 -s /tmp/show",
        ],
    );
    let expected = format!(
        "lease ip={} domain=acme.org dns={} router={}",
        ip("p", "ethernet0"),
        ip("d", "ethernet0"),
        ip("f", "ethernet0")
    );
    assert!(lease.contains(&expected), "{lease}\n(expected {expected})");

    // The status page, in a real browser, while the suite runs: the
    // service left to report updates (its policy off), so that the page
    // shows one pending and then done by the apply below.
    u.ok(&["policy", "set", "AcmeSuite", "--auto", "off"]);
    let mut service = u.spawn(&[
        "utility",
        "run",
        "--interval",
        "2s",
        "--http",
        "127.0.0.1:0",
    ]);
    let page_addr = started_http(&mut service);
    let service = KillOnDrop(service);
    let browser = Browser::start_in(Some(NS));
    let base = format!("http://{page_addr}");
    browser.goto(&base);
    browser.wait_for(
        "return document.querySelectorAll('section[data-deployment=\"AcmeSuite\"] li.s-running').length === 6",
        Duration::from_secs(60),
    );
    browser.screenshot(&screenshots().join("suite-overview.png"));
    browser.goto(&format!("{base}/hosts"));
    browser.screenshot(&screenshots().join("suite-hosts.png"));
    browser.goto(&format!("{base}/deployments/AcmeSuite"));
    let boxes = browser.run(
        "return Array.from(document.querySelectorAll('svg g.van')).map(v => [v.getAttribute('data-van'), \
         Array.from(v.querySelectorAll('g.appliance')).map(a => a.getAttribute('data-component')).sort()])",
        serde_json::json!([]),
    );
    assert_eq!(
        boxes,
        serde_json::json!([["", ["d", "f", "h", "l", "m", "p"]]]),
        "a box per appliance, grouped by VAN"
    );
    browser.screenshot(&screenshots().join("suite-deployment.png"));
    browser.run("window.__stay = 7; return 1", serde_json::json!([]));
    // l's box's second line: its version and state.
    let box_text =
        "document.querySelector('g.appliance[data-component=\"l\"] text:last-of-type').textContent";

    // An update: an entry added (an LDIF a person loads as root), LDAP
    // version 2 published (a new data format): only l restarts, every
    // entry stays, the format migrates.
    let before = u.pids();
    let people = "dn: uid=dave,ou=people,dc=acme,dc=org\nobjectClass: inetOrgPerson\n\
                  uid: dave\ncn: Dave\nsn: Bowman\nmail: dave@acme.org\n";
    let (code, out, err) = u.exec_with_stdin(
        "l",
        &["ldapadd", "-Q", "-Y", "EXTERNAL", "-H", "ldapi:///"],
        people,
    );
    assert_eq!(code, 0, "ldapadd: {out}{err}");
    let v1_disk = std::fs::metadata(built["LDAP"].join("system.qcow2"))
        .unwrap()
        .len();
    let said = u.publish_built("LDAP", &built["LDAP-v2"]);
    eprintln!("LDAP version 2 published:\n{said}");
    let delta = std::fs::metadata(u.dir.join("repos/LDAP/versions/2/system.qcow2"))
        .unwrap()
        .len();
    eprintln!("LDAP v2's program disk: a delta of {delta} bytes on v1's {v1_disk}");
    assert!(delta < v1_disk / 20, "the delta ({delta}) is not small");
    // The open page learns of the new version by itself (the service polls
    // the repository) ...
    let pending = browser.wait_for(
        &format!("return {box_text}.includes('update pending') && {box_text}"),
        Duration::from_secs(60),
    );
    eprintln!("the page, after the publish: l {pending}");
    u.ok(&["update-lock", "AcmeSuite.cvl"]);
    let said = apply_suite(&u);
    assert!(said.contains("update l  LDAP 1 -> 2"), "{said}");
    assert!(said.contains("Applied 1 action(s)"), "{said}");
    // ... and shows it done, without a reload.
    browser.wait_for(
        &format!("return {box_text}.includes('v2 · running')"),
        Duration::from_secs(60),
    );
    assert_eq!(
        browser.run("return window.__stay", serde_json::json!([])),
        serde_json::json!(7),
        "the page reloaded"
    );
    browser.screenshot(&screenshots().join("suite-updated.png"));
    drop(browser);
    drop(service);
    let after = u.pids();
    for c in ["f", "h", "d", "m", "p"] {
        assert_eq!(before[c], after[c], "{c} restarted");
    }
    assert_ne!(before["l"], after["l"], "l did not restart");
    let groups = ldap_search(&u, "ou=groups,dc=acme,dc=org", &["-s", "base", "ou"]);
    assert!(groups.contains("ou: groups"), "{groups}");
    assert_eq!(u.exec_ok("l", &["cat", "/data/ldap/format"]).trim(), "2");
    let people = u.exec_ok(
        "l",
        &[
            "ldapsearch",
            "-Q",
            "-LLL",
            "-Y",
            "EXTERNAL",
            "-H",
            "ldapi:///",
            "-b",
            "ou=people,dc=acme,dc=org",
            "mail",
        ],
    );
    assert!(
        people.contains("mail: alice@acme.org") && people.contains("mail: dave@acme.org"),
        "users lost: {people}"
    );

    // Mail version 2 (a Postfix settings file more): only m restarts; the
    // mailboxes, the users, the key and the certificate on its data disk
    // stay, and bob reads his mail as before.
    let before_mail = u.pids();
    u.publish_built("Mail", &built["Mail-v2"]);
    u.ok(&["update-lock", "AcmeSuite.cvl"]);
    let said = apply_suite(&u);
    assert!(said.contains("update m  Mail 1 -> 2"), "{said}");
    let after_mail = u.pids();
    for c in ["f", "h", "d", "l", "p"] {
        assert_eq!(before_mail[c], after_mail[c], "{c} restarted");
    }
    assert_ne!(before_mail["m"], after_mail["m"], "m did not restart");
    assert_eq!(
        u.exec_ok("m", &["postconf", "-h", "message_size_limit"])
            .trim(),
        "20971520",
        "Mail v2's settings"
    );
    assert_eq!(
        mail_certificate(&u).0,
        cert,
        "the update changed Mail's certificate"
    );
    Mailer::new(&u, &public, "m.acme.org", &ca).inbox("bob", "pw-bob", &["CVL-MAIL-TLS-1"]);
    Mailer::new(&u, &public, "m.acme.org", &ca).send("carol@acme.org", "CVL-MAIL-V2");
    let after = u.pids();

    // DNS version 2 differs by one configuration file: published, it is a
    // delta of a few clusters on version 1's disk.
    u.publish_built("DNS", &built["DNS-v2"]);
    let full = std::fs::metadata(u.dir.join("repos/DNS/versions/1/system.qcow2"))
        .unwrap()
        .len();
    let delta = std::fs::metadata(u.dir.join("repos/DNS/versions/2/system.qcow2"))
        .unwrap()
        .len();
    eprintln!("DNS v2's program disk: a delta of {delta} bytes on v1's {full}");
    assert!(delta < full / 20, "the delta ({delta}) is not small");

    // A resend: a new domain reaches the running daemons and every
    // member's resolver, no VM restarts.
    let file = u.dir.join("AcmeSuite.cvl");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, original.replace("\"acme.org\"", "\"acme.com\"")).unwrap();
    let said = u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    assert!(said.contains("resend"), "{said}");
    for line in said.lines().filter(|l| l.contains("reload hook ran")) {
        eprintln!("  {line}");
    }
    assert_eq!(u.pids(), after, "a resend restarted a VM");
    let answer = dig(NS, &dns, "l.acme.com");
    assert!(
        answer.contains(" aa") && answer.contains(&ip("l", "ethernet0")),
        "{answer}"
    );
    let short = u.exec_ok("p", &["getent", "hosts", "l"]);
    assert!(short.contains("l.acme.com"), "p's search domain: {short}");
    assert!(http_get(&public, "/").contains("acme.com"));
    // Mail reads the users again at once; while LDAP (resent too)
    // restarts, its refresher reads them within 5 s.
    let waited = wait_for_recipient(&u, "bob@acme.com");
    eprintln!("Mail accepts the users of the new domain {waited:.1} s after the resend");
    let greeting = send_mail(&public, "bob@acme.com", "CVL-MAIL-2");
    assert!(greeting.contains("m.acme.com"), "{greeting}");
    // Mail's certificate, issued anew for m.acme.com by the resend (by the
    // same CA, which survived LDAP's update), verifies both sessions again;
    // bob's mailbox kept his mail.
    assert_eq!(
        u.exec_ok("l", &["cat", "/data/ca/ca.pem"]),
        ca,
        "the CA changed"
    );
    let (cert2, subject) = ca_signed_mail_certificate(&u, &cert);
    assert_ne!(
        cert2, cert,
        "the resend of domain issued no new certificate"
    );
    assert!(subject.contains("CN=m.acme.com"), "{subject}");
    let tls = Mailer::new(&u, &public, "m.acme.com", &ca);
    tls.send("bob@acme.com", "CVL-MAIL-TLS-2");
    tls.inbox(
        "bob",
        "pw-bob",
        &["CVL-MAIL-TLS-1", "CVL-MAIL-2", "CVL-MAIL-TLS-2"],
    );

    // Hostile values: configuration files stay valid, nothing runs, the
    // page shows the text.
    let hostile = "Acme \\\"Q\\\" <b>$(touch /tmp/pwned)</b>; `touch /tmp/pwned2`\\nx";
    std::fs::write(
        &file,
        original
            .replace("\"acme.org\"", "\"acme.com\"")
            .replace("\"Acme\"", &format!("\"{hostile}\""))
            .replace("\"IT\"", "\"IT/CN=evil, O=x+y\\\\z\""),
    )
    .unwrap();
    let said = u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    assert!(said.contains("resend"), "{said}");
    assert_eq!(u.pids(), after, "a resend restarted a VM");
    let page = http_get(&public, "/");
    assert!(
        page.contains(
            "Acme &quot;Q&quot; &lt;b&gt;$(touch /tmp/pwned)&lt;/b&gt;; `touch /tmp/pwned2`"
        ),
        "{page}"
    );
    for c in ["l", "m", "p"] {
        let (code, out, err) = u.exec(c, &["sh", "-c", "ls /tmp/pwned* 2>/dev/null"]);
        assert_ne!(code, 0, "{c} ran a value: {out}{err}");
    }
    assert!(send_mail(&public, "carol@acme.com", "CVL-MAIL-3").contains("m.acme.com"));
    // In the certificate, `ou`'s `/CN=` and `, O=` stay text inside its one
    // attribute; `org`, which holds a newline, is left out.
    let (cert3, _) = ca_signed_mail_certificate(&u, &cert2);
    let fields = u.exec_ok(
        "m",
        &[
            "openssl",
            "x509",
            "-in",
            "/data/tls/cert.pem",
            "-noout",
            "-subject",
            "-nameopt",
            "multiline,-esc_msb,utf8",
        ],
    );
    let named = |field: &str| -> Vec<String> {
        fields
            .lines()
            .filter_map(|l| l.trim().strip_prefix(field))
            .map(|v| v.trim_start().trim_start_matches('=').trim().to_string())
            .collect()
    };
    assert_ne!(cert3, cert2, "the hostile resend issued no certificate");
    assert_eq!(named("commonName"), ["m.acme.com"], "{fields}");
    assert_eq!(
        named("organizationalUnitName"),
        ["IT/CN=evil, O=x+y\\\\z"],
        "{fields}"
    );
    assert!(named("organizationName").is_empty(), "{fields}");
    Mailer::new(&u, &public, "m.acme.com", &ca).send("carol@acme.com", "CVL-MAIL-TLS-3");
    assert!(ldap_search(&u, "dc=acme,dc=org", &["-s", "base", "dc"]).contains("dc: acme"));

    u.stop_all();
}

/// Waits until Mail's table of recipients (read from LDAP) holds
/// `address`: the seconds it took.
fn wait_for_recipient(u: &Utility, address: &str) -> f64 {
    let started = Instant::now();
    while !u
        .exec_ok("m", &["cat", "/run/cvl/vusers"])
        .contains(address)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Mail never read {address} from LDAP"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    started.elapsed().as_secs_f64()
}

/// `cvl apply AcmeSuite.cvl` without a question, each VM given 20 s to
/// stop: what it printed.
fn apply_suite(u: &Utility) -> String {
    u.ok(&[
        "apply",
        "AcmeSuite.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ])
}

/// A process killed when the test ends, passing or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` from the outside world: the body.
fn http_get(host: &str, path: &str) -> String {
    http_get_in(NS, host, path).unwrap_or_else(|e| panic!("{e}"))
}

/// An SMTP session from the outside world (the test's namespace).
struct Smtp {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Smtp {
    /// Connects to `host`:25; the session and the server's greeting.
    fn connect(host: &str) -> (Smtp, String) {
        let to = format!("{host}:25");
        let stream = in_netns(NS, move || {
            TcpStream::connect_timeout(&to.parse().unwrap(), Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("smtp {to}: {e}"))
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut smtp = Smtp {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        };
        let greeting = smtp.answer();
        (smtp, greeting)
    }

    /// The server's whole answer (multi-line answers continue with `NNN-`).
    fn answer(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    /// Sends a line; the answer, which must start with `expect`.
    fn say(&mut self, line: &str, expect: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        let answer = self.answer();
        assert!(
            answer.starts_with(expect),
            "{line}: expected {expect}, got: {answer}"
        );
        answer
    }
}

/// An SMTP session from the outside world up to RCPT: the answer to it.
fn rcpt(host: &str, to: &str) -> String {
    let (mut smtp, _) = Smtp::connect(host);
    smtp.say("EHLO outside.example", "250");
    smtp.say("MAIL FROM:<someone@outside.example>", "250");
    let answer = smtp.say(&format!("RCPT TO:<{to}>"), "");
    smtp.say("QUIT", "");
    answer
}

/// Sends a message to `to` through the mail server at `host`:25 from the
/// outside world, checking every answer; the greeting.
fn send_mail(host: &str, to: &str, marker: &str) -> String {
    let (mut smtp, greeting) = Smtp::connect(host);
    assert!(greeting.starts_with("220"), "{greeting}");
    smtp.say("EHLO outside.example", "250");
    smtp.say("MAIL FROM:<someone@outside.example>", "250");
    smtp.say(&format!("RCPT TO:<{to}>"), "250");
    smtp.say("DATA", "354");
    smtp.say(&format!("Subject: hello\r\n\r\n{marker}\r\n."), "250");
    smtp.say("QUIT", "221");
    greeting
}

/// Mail's certificate as a user fetches it (`cvl exec m -- cat`), and its
/// subject (RFC 2253).
fn mail_certificate(u: &Utility) -> (String, String) {
    let cert = u.exec_ok("m", &["cat", "/data/tls/cert.pem"]);
    let subject = u.exec_ok(
        "m",
        &[
            "openssl",
            "x509",
            "-in",
            "/data/tls/cert.pem",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
        ],
    );
    (cert, subject.trim().to_string())
}

/// Mail's certificate once it is a new one (not `old`) signed by the
/// suite's CA: after a resend that changed its subject, LDAP (resent at the
/// same time) may answer Mail's request only after Mail's resend ended, and
/// Mail serves a certificate signed by its own key until its refresher
/// (every 5 s) gets the CA's.
fn ca_signed_mail_certificate(u: &Utility, old: &str) -> (String, String) {
    let started = Instant::now();
    loop {
        let (cert, subject) = mail_certificate(u);
        let (signed, _, _) = u.exec(
            "m",
            &[
                "openssl",
                "verify",
                "-CAfile",
                "/data/tls/ca.pem",
                "/data/tls/cert.pem",
            ],
        );
        // ... and served: SMTP and IMAP reload it a moment after it lands.
        let served = |starttls: &str, port: &str| {
            let script = format!(
                "echo | openssl s_client -starttls {starttls} -connect 127.0.0.1:{port} \
                 -CAfile /data/tls/ca.pem -verify_return_error >/dev/null 2>&1"
            );
            u.exec("m", &["sh", "-c", &script]).0 == 0
        };
        if cert != old && signed == 0 && served("smtp", "25") && served("imap", "143") {
            eprintln!(
                "Mail's new certificate from the suite's CA, {:.1} s after the resend: {subject}",
                started.elapsed().as_secs_f64()
            );
            return (cert, subject);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Mail has no new certificate from the suite's CA 60 s after the resend: {subject}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A mail client in the outside world (curl in the test's namespace) that
/// trusts the CA `ca` and reaches `name` (the mail host's name, which its
/// certificate must hold) at the firewall's public address.
struct Mailer {
    public: String,
    name: String,
    trust: std::path::PathBuf,
}

impl Mailer {
    fn new(u: &Utility, public: &str, name: &str, ca: &str) -> Mailer {
        let trust = u.dir.join(format!("trust-{name}.pem"));
        std::fs::write(&trust, ca).unwrap();
        Mailer {
            public: public.to_string(),
            name: name.to_string(),
            trust,
        }
    }

    /// curl in the namespace, `stdin` its input: exit code and output.
    fn curl(&self, port: u16, args: &[&str], stdin: &str) -> (i32, String, String) {
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", NS, "curl", "-sS", "--max-time", "30"])
            .arg("--cacert")
            .arg(&self.trust)
            .arg("--resolve")
            .arg(format!("{}:{port}:{}", self.name, self.public))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("curl is installed");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Sends a message holding `marker` to `to` over SMTP with STARTTLS
    /// required (the certificate verified).
    fn send(&self, to: &str, marker: &str) {
        let message = format!(
            "From: someone@outside.example\r\nTo: {to}\r\nSubject: {marker}\r\n\r\n{marker}\r\n"
        );
        let (code, out, err) = self.curl(
            25,
            &[
                "--ssl-reqd",
                &format!("smtp://{}:25", self.name),
                "--mail-from",
                "someone@outside.example",
                "--mail-rcpt",
                to,
                "--upload-file",
                "-",
            ],
            &message,
        );
        assert_eq!(code, 0, "SMTP with STARTTLS to {to}: {out}{err}");
    }

    /// An IMAP request for `path` (the user and password in curl's config
    /// on stdin, never on a command line), with STARTTLS required or not.
    fn imap(&self, user: &str, password: &str, path: &str, tls: bool) -> (i32, String, String) {
        let url = format!("imap://{}:143/{path}", self.name);
        let mut args = vec!["-K", "-", url.as_str()];
        if tls {
            args.insert(0, "--ssl-reqd");
        }
        self.curl(143, &args, &format!("user = \"{user}:{password}\"\n"))
    }

    /// Every message in `user`'s INBOX, read over IMAP with STARTTLS, once
    /// it holds every marker of `expect` (Postfix delivers from its queue
    /// a moment after it accepted a message): asked for up to 30 s.
    fn inbox(&self, user: &str, password: &str, expect: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let mut all = String::new();
            for index in 1..=20 {
                let (code, out, err) =
                    self.imap(user, password, &format!("INBOX;MAILINDEX={index}"), true);
                if code == 78 {
                    break; // no such message: the mailbox has index - 1
                }
                assert_eq!(
                    code, 0,
                    "IMAP with STARTTLS, {user}'s message {index}: {err}"
                );
                all.push_str(&out);
            }
            if expect.iter().all(|m| all.contains(m)) {
                return all;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{expect:?} are not all in {user}'s mailbox:\n{all}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Adds a user on LDAP (`cvl-adduser`, the password `pw-NAME` on stdin):
/// its exit code and output.
fn add_user_raw(u: &Utility, name: &str) -> (i32, String, String) {
    u.exec_with_stdin("l", &["cvl-adduser", name], &format!("pw-{name}\n"))
}

fn add_user(u: &Utility, name: &str) -> String {
    let (code, out, err) = add_user_raw(u, name);
    assert_eq!(code, 0, "cvl-adduser {name}: {out}{err}");
    out
}

/// Gives the test an address of its own on the bridge of the VAN that
/// `member` (an address in it) belongs to, in namespace `ns`: `.250` of
/// its /24.
fn van_probe(ns: &str, member: &str) {
    let links = sh(&["ip", "-n", ns, "-o", "link", "show", "type", "bridge"]);
    let bridges: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name))
        .filter(|name| name.starts_with("cvlbr"))
        .collect();
    assert_eq!(bridges.len(), 1, "one VAN bridge expected in {ns}: {links}");
    let (net, _) = member.rsplit_once('.').unwrap();
    let probe = format!("{net}.250");
    run(&[
        "ip",
        "-n",
        ns,
        "addr",
        "replace",
        &format!("{probe}/24"),
        "dev",
        bridges[0],
    ]);
}

/// `dig +norec @server name` from namespace `ns`: what it printed (a
/// timeout included).
fn dig(ns: &str, server: &str, name: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "dig", "+norec", "+time=3", "+tries=2"])
        .arg(format!("@{server}"))
        .arg(name)
        .output()
        .expect("dig (Debian's bind9-dnsutils) runs");
    text(&out)
}

/// A DNS server of the test's (dnsmasq) at `addr` in namespace `ns` that
/// answers every name under `domain` with `answer`; killed on drop.
struct Forwarder {
    child: std::process::Child,
}

impl Forwarder {
    fn start(ns: &str, addr: &str, domain: &str, answer: &str) -> Forwarder {
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "dnsmasq", "--keep-in-foreground"])
            .args([
                "--port=53",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
            ])
            .arg(format!("--listen-address={addr}"))
            .arg(format!("--address=/{domain}/{answer}"))
            .arg("--pid-file=")
            .spawn()
            .expect("dnsmasq (Debian's dnsmasq-base) runs");
        let forwarder = Forwarder { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dig(ns, addr, &format!("probe.{domain}")).contains(answer) {
            assert!(
                Instant::now() < deadline,
                "the test's forwarder never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        forwarder
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An anonymous search on LDAP from inside it (`ldapsearch -x -LLL`) under
/// `base`, with `more` arguments: its exit code and output.
fn ldap_search_raw(u: &Utility, base: &str, more: &[&str]) -> (i32, String, String) {
    let mut argv = vec![
        "ldapsearch",
        "-x",
        "-LLL",
        "-H",
        "ldap://localhost",
        "-b",
        base,
    ];
    argv.extend(more);
    u.exec("l", &argv)
}

/// [`ldap_search_raw`] that must succeed: what it printed.
fn ldap_search(u: &Utility, base: &str, more: &[&str]) -> String {
    let (code, out, err) = ldap_search_raw(u, base, more);
    assert_eq!(code, 0, "ldapsearch -b {base} {more:?}: {out}{err}");
    out
}

/// QMP's `block_set_io_throttle`: a disk's I/O limits (0 is none).
#[derive(serde::Serialize)]
struct SetIoThrottle {
    device: String,
    bps: u64,
    bps_rd: u64,
    bps_wr: u64,
    iops: u64,
    iops_rd: u64,
    iops_wr: u64,
}

impl cvl_executor::qmp::Command for SetIoThrottle {
    const NAME: &'static str = "block_set_io_throttle";
    type Return = serde_json::Value;
}
