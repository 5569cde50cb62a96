//! The main job, as the README's first command runs it: `scripts/demo.sh`
//! end to end (build, publish, apply the suite in its namespace, use it),
//! its exit code and every section it prints held to what it claims, then
//! `scripts/demo.sh --stop` leaving no QEMU, no namespace and no file in
//! /dev/shm behind. It runs beside the other QEMU tests, so a step that
//! depends on timing fails here rather than on a user's machine.

use std::process::Command;

use cvl_e2e::*;

/// The demo's namespace (scripts/demo.sh names it).
const NS: &str = "cvl-demo";

/// Stops the demo and removes its namespace even when the test fails.
struct Demo {
    work: std::path::PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("scripts/demo.sh"))
            .arg("--stop")
            .arg(&self.work)
            .output();
        drop(Netns {
            name: NS.to_string(),
        });
    }
}

/// The QEMU processes whose command line names `needle`.
fn qemus_naming(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("qemu-system") && cmdline.contains(needle) {
            out.push(cmdline);
        }
    }
    out
}

#[test]
fn the_main_job_runs_every_check_and_stops_clean() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("demo");
    let demo = Demo { work: work.clone() };
    let shm_before = tmpfs_files_left(&["cvl-params-", "cvl-seed-"], None);
    let started = std::time::Instant::now();
    // The same script as the README's, with the binary the tests built
    // (the release build is the same code; CI builds it once, not twice).
    let out = Command::new(workspace().join("scripts/demo.sh"))
        .args(["--profile", "dev"])
        .arg(&work)
        .output()
        .expect("scripts/demo.sh runs");
    let said = text(&out);
    eprintln!(
        "scripts/demo.sh took {:.0} s:\n{said}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "scripts/demo.sh exited with {:?}:\n{said}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Every section, in order, and what each claims.
    let sections = [
        "== building the six appliances",
        "== publishing the six appliances",
        "== the plan",
        "== applying it on this machine",
        "from nothing to six appliances serving",
        "== what runs",
        "== using it",
        "-- the web page at http://",
        "ok: the page names the domain acme.org",
        "-- the mail server's greeting at",
        "ok: a 220 greeting naming acme.org",
        "-- a port the firewall does not forward",
        "ok: closed",
        "-- DNS: the firewall resolves every name d serves",
        "-- a name outside the domain: p resolves www.example.net",
        "-- LDAP at l: the organization's entry",
        "o: Acme",
        "ok: the entry dc=acme,dc=org names o: Acme",
        "-- each appliance's own checks",
        "ok: p: 1 check(s) passed",
        "== where to look next",
        "Every check passed.",
    ];
    let mut at = 0;
    for section in sections {
        let found = stdout[at..].find(section);
        assert!(
            found.is_some(),
            "`{section}` is missing (or out of order) in what the demo printed:\n{stdout}"
        );
        at += found.unwrap() + section.len();
    }
    assert!(stdout.contains("220 "), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    // Every name of d's dnshosts (l, m and p) resolved on f through d, each
    // an address of the VAN.
    for name in ["l", "m", "p"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("ok: {name}.acme.org -> ")))
            .unwrap_or_else(|| panic!("no DNS answer for {name}.acme.org:\n{stdout}"));
        let address = line.rsplit(' ').next().unwrap();
        assert!(
            address.parse::<std::net::Ipv4Addr>().is_ok(),
            "{name}: {line}"
        );
    }
    // A name outside the domain, forwarded by d to the outside world's
    // name server the demo runs.
    assert!(
        stdout.contains("ok: www.example.net -> 198.19.0.254"),
        "{stdout}"
    );
    // A user added, sent a mail with STARTTLS, and reading it over IMAP
    // with STARTTLS, all through the firewall.
    for said in [
        "ok: dana is in the directory",
        "ok: accepted over STARTTLS",
        "ok: dana read her mail",
    ] {
        assert!(stdout.contains(said), "`{said}` is missing:\n{stdout}");
    }
    assert!(work.join("AcmeSuite.cvl").is_file());
    let running = qemus_naming(&work.display().to_string());
    assert_eq!(running.len(), 6, "six QEMUs run the suite: {running:#?}");

    // Stopped: no QEMU, no namespace, nothing in /dev/shm.
    let stop = Command::new(workspace().join("scripts/demo.sh"))
        .arg("--stop")
        .arg(&work)
        .output()
        .unwrap();
    let stopped = text(&stop);
    assert!(
        stop.status.success(),
        "scripts/demo.sh --stop failed:\n{stopped}"
    );
    assert!(
        stopped.contains("Applied 6 action(s) to AcmeSuite"),
        "{stopped}"
    );
    let left = qemus_naming(&work.display().to_string());
    assert!(left.is_empty(), "QEMUs left after --stop: {left:#?}");
    assert!(
        !std::path::Path::new(&format!("/run/netns/{NS}")).exists(),
        "the namespace {NS} is still there"
    );
    let files: Vec<std::path::PathBuf> = tmpfs_files_left(&["cvl-params-", "cvl-seed-"], None)
        .into_iter()
        .filter(|f| !shm_before.contains(f))
        .collect();
    assert!(files.is_empty(), "left in /dev/shm: {files:?}");
    drop(demo);
}
