//! Apply of 30 appliances across three SSH hosts, on real parts (the lab of
//! `hosts.rs`: three namespaces with their own `sshd`, a bridge between
//! them): the wall time of the apply beside one guest's apply alone (the
//! critical path) and thirty times it (their sum), then `cvl status` and an
//! apply that changes nothing with 30 guests running, beside the same with
//! one and with none. `CVL_SPREAD_COUNT=N` applies N instead of 30. Prints figures; run as root with
//! `cargo bench -p cvl-e2e --bench spread` (`CVL_E2E_CVL` names the `cvl`
//! to measure, e.g. a release build).

use std::time::Instant;

use cvl_e2e::*;

fn main() {
    // `CVL_SPREAD_COUNT`: another number of appliances.
    let count: usize = std::env::var("CVL_SPREAD_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(30);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let lab = Lab::new(&dir);
    let u = Utility {
        dir: dir.clone(),
        cvl: cvl_binary(),
        ns: ns("ctl"),
        roots: HOSTS.iter().map(|(h, _)| lab.root(h)).collect(),
        env: Vec::new(),
        env_secrets: false,
    };
    u.publish(
        "Tiny",
        "CVL = \"0.8\";\nTiny extends VMAppliance {\n  vm = \"tiny.vm\";\n}\n",
    );
    let import =
        "import { url => \"http://virtualappliance.org/Tiny\", cvl => \"Tiny.cvl\" } Tiny;\n";
    let fleet = |name: &str, count: usize| {
        let mut text = format!("{import}{name} extends VANAppliance {{\n");
        for i in 1..=count {
            text.push_str(&format!("  Tiny t{i};\n"));
        }
        text.push_str("  vanIF = \"t1.ethernet0\";\n}\n");
        std::fs::write(dir.join(format!("{name}.cvl")), text).unwrap();
        format!("{name}.cvl")
    };
    for (host, _) in HOSTS {
        let mut args = lab.host_add_args(host, 2304, 11);
        args.extend(["--fingerprint".to_string(), lab.fingerprint(host)]);
        u.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    u.ok(&["pool", "set", "public", "198.18.0.100-198.18.0.150"]);

    let timed = |args: &[&str]| {
        let t = Instant::now();
        let said = u.ok(args);
        (t.elapsed().as_secs_f64(), said)
    };
    let apply = |file: &str| timed(&["apply", file, "--auto-approve", "--stop-timeout", "20"]);

    // One guest alone: the critical path of any apply of guests in parallel.
    let one = fleet("One", 1);
    let (alone, said) = apply(&one);
    assert!(said.contains("Applied"), "{said}");
    // The first status copies the agent to the two hosts without a guest.
    timed(&["status"]);
    let (status_one, _) = timed(&["status"]);
    let (noop_one, said) = apply(&one);
    assert!(said.contains("No changes"), "{said}");
    u.ok(&["stop", &one, "--auto-approve", "--stop-timeout", "20"]);

    let many = fleet("Many", count);
    let (wall, said) = apply(&many);
    assert!(
        said.contains(&format!("Applied {count} action(s)")),
        "{said}"
    );
    let status = u.ok(&["status", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&status).unwrap();
    let rows: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["deployment"] == "Many")
        .collect();
    assert_eq!(rows.len(), count, "{status}");
    assert!(rows.iter().all(|r| r["agent"] == true), "{status}");
    let mut per_host = std::collections::BTreeMap::<String, usize>::new();
    for r in rows {
        *per_host
            .entry(r["host"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let (status_many, _) = timed(&["status"]);
    let (status_many_again, _) = timed(&["status"]);
    let (noop_many, said) = apply(&many);
    assert!(said.contains("No changes"), "{said}");
    let (stop_many, _) = timed(&["stop", &many, "--auto-approve", "--stop-timeout", "20"]);
    // No guest left: what remains is the hosts' connections and agents.
    let (status_none, _) = timed(&["status"]);

    println!(
        "spread: {count} appliances across {} hosts ({per_host:?})",
        HOSTS.len()
    );
    println!("  one guest's apply alone (the critical path): {alone:.1} s");
    println!(
        "  apply of {count}: {wall:.1} s, against {:.1} s for {count} one after another ({:.1}x the critical path; {} cores, TCG)",
        alone * count as f64,
        wall / alone,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("  cvl status: {status_none:.2} s with no guest, {status_one:.2} s with 1, {status_many:.2} s (again {status_many_again:.2} s) with {count}");
    println!(
        "  apply without changes: {noop_one:.2} s with 1 guest, {noop_many:.2} s with {count}"
    );
    println!("  stop of {count}: {stop_many:.1} s");
}
