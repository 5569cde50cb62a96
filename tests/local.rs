//! `cvl apply` on this machine, on real QEMU and real guests, inside a
//! network namespace the test creates: the six-appliance suite comes up in
//! dependency order with its parameters; a new DNS version restarts only
//! DNS and its data disk survives; a changed domain is resent to running
//! guests without a restart; Plone dropped goes to the attic. Then faults:
//! a guest that never becomes ready, qemu-img failing, and `cvl apply`
//! killed at points spread over its run, each followed by an apply that converges.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cvl_e2e::*;

#[test]
fn the_suite_runs_updates_resends_and_goes_to_the_attic() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, u, _ns) = setup("cvl-e2e-suite");

    // From nothing to all started. Secrets come from the environment (as in
    // CI): no command line holds one, nor the environment of the host agent
    // or a QEMU, which outlive the apply.
    let started = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_processes(
        SECRETS.iter().map(|(_, v)| v.to_string()).collect(),
        done.clone(),
        |cmd| cmd.contains("qemu-system") || cmd.contains("host serve"),
    );
    let said = u.ok(&[
        "apply",
        "AcmeSuite.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let found = sampler.join().unwrap();
    assert!(found.is_empty(), "secrets in the process list: {found:#?}");
    eprintln!(
        "apply of the suite: {:.1} s\n{said}",
        started.elapsed().as_secs_f64()
    );
    assert!(said.contains("Applied 6 action(s) to AcmeSuite"), "{said}");
    let order: Vec<&str> = said
        .lines()
        .filter_map(|l| l.split("] start   ").nth(1))
        .filter_map(|l| l.strip_suffix(" ..."))
        .collect();
    let at = |c: &str| order.iter().position(|x| *x == c).unwrap();
    assert!(
        at("h") < at("d") && at("d") < at("l") && at("l") < at("m"),
        "{order:?}"
    );
    let status = u.ok(&["status", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 6);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["agent"] == true && r["drift"] == ""),
        "{rows:#}"
    );

    // Inside the guests: their parameters, their addresses, their peers'.
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
    assert_eq!(plan["actions"].as_array().unwrap().len(), 0, "converged");
    let ip = |c: &str| {
        plan["allocations"][c]["interfaces"]["ethernet0"]["ip"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for c in ["f", "h", "d", "l", "m", "p"] {
        let params = u.params(c);
        assert!(
            params.contains(&format!("ethernet0.ip={}\n", escape(&ip(c)))),
            "{c}: {params}"
        );
        assert!(
            params.contains(&format!("rootpw={}\n", escape(SECRETS[0].1))),
            "{c} lacks rootpw"
        );
    }
    let d_params = u.params("d");
    assert!(
        d_params.contains(&escape(&escape(&ip("l")))),
        "d's dnshosts lack l: {d_params}"
    );
    if let Err(said) = u.ping("d", &ip("l")) {
        panic!("d cannot reach l over the VAN: {said}");
    }

    // A new DNS version: only DNS restarts, its data survives.
    let said = u.new_dns_version("CVLDATA-1");
    assert!(
        said.contains("update d  DNS 1 -> 2 (import at GroupwareSuite.cvl:4)"),
        "{said}"
    );
    assert!(said.contains("Applied 1 action(s)"), "{said}");
    let after = u.pids();

    // A changed domain: resent to the running guests, no restart.
    let file = u.dir.join("AcmeSuite.cvl");
    let text_now = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text_now.replace("\"acme.org\"", "\"acme.com\"")).unwrap();
    let said = u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    assert!(said.contains("Applied 5 action(s)"), "{said}");
    assert_eq!(u.pids(), after, "a resend restarted something");
    for c in ["d", "h", "l", "m", "p"] {
        assert!(
            u.params(c).contains("domain=acme%2Ecom\n"),
            "{c} did not get the new domain"
        );
        let reloads = u.agent(c).read_file("/run/cvl/reloads").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&reloads).trim(),
            "1",
            "{c}'s reload hook"
        );
    }
    // The firewall takes no domain: it got no resend.
    assert!(
        u.agent("f").read_file("/run/cvl/reloads").is_err(),
        "f was reloaded"
    );

    // `cvl exec`: the command's output and exit code, arguments untouched
    // by any shell, output streamed as it comes.
    let (code, out, err) = u.exec(
        "d",
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
            "$(touch /tmp/x)",
        ],
    );
    assert_eq!((code, out.as_str()), (7, "out\n"), "{err}");
    assert!(err.contains("err"), "{err}");
    assert_eq!(
        u.exec("d", &["test", "-e", "/tmp/x"]).0,
        1,
        "an argument ran"
    );
    let (code, _, err) = u.exec("d", &["no-such-command"]);
    assert_eq!(code, 127, "{err}");
    let (code, _, err) = u.exec("nope", &["true"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("has no VM appliance `nope`") && err.contains("d, "),
        "{err}"
    );
    let mut slow = u
        .command(&[
            "exec",
            "AcmeSuite.cvl",
            "d",
            "--",
            "sh",
            "-c",
            "echo first; sleep 4; echo second",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut lines = std::io::BufReader::new(slow.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut lines, &mut first).unwrap();
    assert_eq!(first, "first\n");
    assert!(
        slow.try_wait().unwrap().is_none(),
        "the first line came only once the command had ended"
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
    assert_eq!(rest, "second\n");
    assert!(slow.wait().unwrap().success());

    // A saved plan: applied while current, refused once the state moved on.
    u.ok(&[
        "stop",
        "AcmeSuite.cvl",
        "m",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
    u.ok(&["plan", "AcmeSuite.cvl", "--out", "m.json"]);
    let said = u.ok(&["apply", "m.json", "--auto-approve"]);
    assert!(said.contains("Applied 1 action(s)"), "{said}");
    let out = u.cvl(&["apply", "m.json", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("the saved plan is stale: the state changed since"),
        "{}",
        text(&out)
    );

    // Plone dropped: stopped, its folder in the attic.
    let gws = suite_text("GroupwareSuite");
    let mut without = gws
        .replace("import { url => \"http://virtualappliance.org/Plone\", cvl => \"Plone.cvl\" } Plone;\n", "")
        .replace("  Plone p;\n", "")
        .replace("  p.rootpw = rootpw;\n", "")
        .replace("  p.dns = d.ethernet0.ip;\n", "")
        .replace("  p.org = org;\n  p.domain = domain;\n", "");
    for (keep, drop) in [
        (
            "{ name => m.name, mac => m.ethernet0.mac, ip => m.ethernet0.ip }",
            "{ name => p.name, mac => p.ethernet0.mac, ip => p.ethernet0.ip }",
        ),
        (
            "{ name => m.name, ip => m.ethernet0.ip }",
            "{ name => p.name, ip => p.ethernet0.ip }",
        ),
        (
            "{ port => m.imap, ip => m.ethernet0.ip }",
            "{ port => p.http, ip => p.ethernet0.ip }",
        ),
    ] {
        let start = without.find(&format!("{keep},")).unwrap();
        let end = without.find(&format!("{drop};")).unwrap() + drop.len();
        without.replace_range(start..end, keep);
    }
    u.publish("GroupwareSuite", &without);
    u.ok(&["update-lock", "AcmeSuite.cvl"]);
    let plone_pid = u.pid("p").unwrap();
    let said = u.ok(&[
        "apply",
        "AcmeSuite.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
    assert!(
        said.contains("remove  p: stopped (agent); moved to"),
        "{said}"
    );
    assert!(!alive(plone_pid), "Plone still runs");
    assert!(!u.vm_dir("p").exists());
    let attic = walk(&u.dir.join("home/host/attic/AcmeSuite"));
    assert!(
        attic
            .iter()
            .any(|f| f.to_string_lossy().contains("/p-") && f.ends_with("data-ide0-1.qcow2")),
        "{attic:?}"
    );

    // Stop it all.
    let said = u.stop_all();
    assert!(said.contains("Applied 5 action(s)"), "{said}");
    assert!(
        u.pids().values().all(Option::is_none),
        "still running: {:?}",
        u.pids()
    );
    let (code, _, err) = u.exec("d", &["true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("is not running"), "{err}");

    // No secret rests in a file the utility wrote, nor in /dev/shm.
    let mut files = walk(&u.dir.join("home"));
    files.retain(|f| {
        !f.to_string_lossy().contains("/cache/") && f.extension().is_none_or(|e| e != "qcow2")
    });
    files.extend(
        walk(&u.dir)
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json" || e == "lock")),
    );
    for f in files.iter().chain(walk(Path::new("/dev/shm")).iter()) {
        let bytes = std::fs::read(f).unwrap_or_default();
        for (_, secret) in SECRETS {
            assert!(!contains(&bytes, secret), "{} holds a secret", f.display());
        }
    }
    assert_no_params_left(&u);
}

#[test]
fn faults_fail_clearly_and_the_next_apply_converges() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, u, _ns) = setup("cvl-e2e-faults");

    // A guest that never becomes ready (its init fails): a clear error,
    // its dependents skipped, the rest started, no QEMU left for it.
    let guest = guest();
    let broken = DESCRIPTION.replace(
        "console=ttyS0 quiet",
        "console=ttyS0 quiet rdinit=/bin/false",
    );
    let dhcp = stage(&u.dir, &guest, "DHCP", &suite_text("DHCP"), &broken);
    u.publish_file("DHCP", &dhcp);
    u.ok(&["update-lock", "AcmeSuite.cvl"]);
    let out = u.cvl(&[
        "apply",
        "AcmeSuite.cvl",
        "--auto-approve",
        "--ready-timeout",
        // f must boot within it on two cores busy with other tests' guests
        // (and builds): 15 s was not always enough.
        "40",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("failed  h: AcmeSuite/h did not become ready"),
        "{said}"
    );
    assert!(
        said.contains("skipped d: it waits for a failed action"),
        "{said}"
    );
    assert!(u.pid("h").is_none(), "the failed guest still runs");
    assert!(
        u.pid("f").is_some(),
        "independent work did not finish: {said}"
    );
    let status = u.cvl(&["status"]);
    assert!(
        text(&status).contains("an apply did not finish"),
        "{}",
        text(&status)
    );

    // Fixed (a good DHCP version): the next apply converges.
    u.publish("DHCP", &suite_text("DHCP"));
    u.ok(&["update-lock", "AcmeSuite.cvl"]);
    let said = u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    assert!(said.contains("Applied"), "{said}");
    assert!(u.pids().values().all(Option::is_some), "{:?}", u.pids());
    u.write_data("d", "CVLDATA-2");

    // qemu-img failing: a data disk too large to create.
    let file = u.dir.join("AcmeSuite.cvl");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        original.replace(
            "}\n",
            "  p.datadisks = { device => \"ide0:2\", size => \"9000000T\" };\n}\n",
        ),
    )
    .unwrap();
    let out = u.cvl(&[
        "apply",
        "AcmeSuite.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("failed  p: qemu-img create failed"), "{said}");
    std::fs::write(&file, &original).unwrap();
    u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);

    // `cvl apply` killed at points spread over its run (stop everything,
    // apply, kill after 0.3 s, 1.9 s, ... 6.7 s), then an apply that
    // converges; the data disk is never lost.
    let mut killed_mid_way = 0;
    for trial in 0..5u64 {
        u.stop_all();
        let mut child = u
            .command(&["apply", "AcmeSuite.cvl", "--auto-approve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + trial * 1600));
        if child.try_wait().unwrap().is_none() {
            killed_mid_way += 1;
        }
        // SIGKILL the cvl process itself (ip netns exec execs it).
        // SAFETY: our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        let said = u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
        assert!(
            u.pids().values().all(Option::is_some),
            "trial {trial}: {said}"
        );
        let plan: serde_json::Value =
            serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
        assert_eq!(
            plan["actions"].as_array().unwrap().len(),
            0,
            "trial {trial} did not converge"
        );
        let status = u.cvl(&["status"]);
        assert_eq!(
            status.status.code(),
            Some(0),
            "trial {trial}: {}",
            text(&status)
        );
    }
    assert!(
        killed_mid_way >= 4,
        "only {killed_mid_way} of 5 kills landed mid-apply"
    );
    assert_eq!(
        u.read_data("d", 9),
        "CVLDATA-2",
        "d's data disk lost its data"
    );
    u.stop_all();
    // However often `cvl apply` was killed, its agents cleaned up.
    assert_no_params_left(&u);
}

/// Three components of one appliance start at once from a cold cache: each
/// host-side fill of the program cache has one writer, the others reuse its
/// verified files.
#[test]
fn three_components_of_one_appliance_start_together_from_a_cold_cache() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, u, _ns) = bare("cvl-e2e-replicas");
    let said = apply_replicas(&u);
    eprintln!("{said}");
    u.ok(&[
        "stop",
        "Replicas.cvl",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
}
