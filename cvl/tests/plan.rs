//! `cvl plan` on the paper's six-appliance suite, published into local
//! repositories: the first plan starts six appliances in provides/requires
//! order; with that recorded as applied (through the state store, as the
//! executor will record it), an unchanged file plans nothing, a new DNS
//! version plans one update, a changed `domain` resends to exactly the
//! appliances it reaches, a changed secret resends without showing it, and
//! dropping Plone plans one remove. Also `show`, `graph`, `stop`,
//! `--target`, `--detailed-exitcode`, and refusals.

use cvl_planner::plan::{ActionKind, Plan};
mod common;
use common::suite::{actions, assert_no_secret, Suite};
use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_suite_plans_start_update_resend_and_remove() {
    let mut suite = Suite::new();

    // The first plan: six starts, each after what it requires.
    let first = suite.plan(&[]);
    assert_eq!(first.format_version, "1");
    assert_eq!(first.deployment, "AcmeSuite");
    assert_eq!(
        actions(&first),
        [
            ("start", "f"),
            ("start", "h"),
            ("start", "d"),
            ("start", "l"),
            ("start", "m"),
            ("start", "p")
        ]
    );
    let pos = |c: &str| {
        first
            .actions
            .iter()
            .position(|a| a.component.0 == c)
            .unwrap()
    };
    assert!(pos("h") < pos("d") && pos("d") < pos("l") && pos("l") < pos("m"));
    for (i, a) in first.actions.iter().enumerate() {
        for dep in &a.after {
            assert!(pos(&dep.0) < i, "{} before {}", a.component, dep);
        }
    }
    let after = |c: &str| -> Vec<&str> {
        first.actions[pos(c)]
            .after
            .iter()
            .map(|p| p.0.as_str())
            .collect()
    };
    assert_eq!(after("d"), ["h"]);
    assert_eq!(after("m"), ["d", "h", "l"]);
    assert!(first.actions.iter().all(|a| a.reason == "new"));
    // Allocations: one VAN, distinct addresses in its /24, f's exported
    // interface public.
    assert_eq!(first.vans.len(), 1);
    let f = &first.allocations[&cvl_planner::ComponentPath("f".into())];
    assert_eq!(f.host, "local");
    assert_eq!(f.interfaces["ethernet0"].ip.as_deref(), Some("10.0.1.1"));
    assert_eq!(f.interfaces["ethernet1"].ip.as_deref(), Some("198.19.0.1"));
    // The values flow: d's DNS table holds the allocated addresses.
    let d = &first.desired[&cvl_planner::ComponentPath("d".into())];
    let dnshosts = serde_json::to_string(&d.params["dnshosts"]).unwrap();
    assert!(dnshosts.contains("ip=10%2E0%2E1%2E4"), "{dnshosts}");
    assert!(
        first.missing_secrets.is_empty(),
        "{:?}",
        first.missing_secrets
    );
    assert_no_secret(
        &std::fs::read(suite.dir.join("plan.json")).unwrap(),
        "the saved plan",
    );

    // --target: l and what it waits for; --detailed-exitcode: 2 for changes.
    let target = suite.plan(&["--target", "l"]);
    assert_eq!(
        actions(&target),
        [("start", "h"), ("start", "d"), ("start", "l")]
    );
    let mirror = suite.mirror();
    let out = suite.cvl(&[
        "plan",
        "--no-refresh",
        "--mirror",
        &mirror,
        "AcmeSuite.cvl",
        "--detailed-exitcode",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("Plan for AcmeSuite: 6 to start."), "{human}");
    assert!(human.contains("start  d  new  (after h)"), "{human}");

    // Applied: nothing more to do.
    suite.record_applied(&first);
    let out = suite.cvl(&[
        "plan",
        "--no-refresh",
        "--mirror",
        &mirror,
        "AcmeSuite.cvl",
        "--detailed-exitcode",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("No changes"));
    assert_no_secret(
        &std::fs::read(suite.dir.join("home/state.db")).unwrap(),
        "state.db",
    );

    // A new DNS version: exactly one update, traced to its import.
    let ex = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/groupware/suite");
    suite.publish("DNS", &ex.join("DNS.cvl"));
    assert!(
        suite.plan(&[]).actions.is_empty(),
        "cvl.lock keeps version 1 until update-lock"
    );
    suite.update_lock();
    let update = suite.plan(&[]);
    assert_eq!(actions(&update), [("update", "d")]);
    assert_eq!(
        update.actions[0].reason,
        "DNS 1 -> 2 (import at GroupwareSuite.cvl:4)"
    );
    suite.record_applied(&update);

    // A changed domain: resends to exactly the appliances it reaches.
    let file = suite.dir.join("AcmeSuite.cvl");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("domain = \"acme.org\"", "domain = \"acme.com\""),
    )
    .unwrap();
    let resend = suite.plan(&[]);
    assert_eq!(
        actions(&resend),
        [
            ("resend", "d"),
            ("resend", "h"),
            ("resend", "l"),
            ("resend", "m"),
            ("resend", "p")
        ]
    );
    for a in &resend.actions {
        assert_eq!(a.reason, "domain \"acme.org\" -> \"acme.com\"");
        assert_eq!(a.action, ActionKind::Resend);
    }
    suite.record_applied(&resend);

    // A changed secret: resends to the six that take it, value unseen.
    suite.rootpw = "canary-root-CHANGED".to_string();
    let secret = suite.plan(&[]);
    assert_eq!(secret.actions.len(), 6);
    for a in &secret.actions {
        assert_eq!(a.action, ActionKind::Resend);
        let reason = a.reason.to_string();
        let (before, after) = reason
            .strip_prefix("rootpw (sensitive) fingerprint ")
            .and_then(|r| r.split_once(" -> "))
            .unwrap_or_else(|| panic!("{reason}"));
        assert!(before != after && before.len() == 8, "{reason}");
    }
    let saved = std::fs::read(suite.dir.join("plan.json")).unwrap();
    assert_no_secret(&saved, "the saved plan");
    assert!(!String::from_utf8_lossy(&saved).contains("canary-root-CHANGED"));
    suite.record_applied(&secret);

    // Plone dropped from a new GroupwareSuite: one remove, and resends to
    // the appliances whose tables named it.
    let gws = std::fs::read_to_string(ex.join("GroupwareSuite.cvl")).unwrap();
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
        let start = without
            .find(&format!("{keep},"))
            .unwrap_or_else(|| panic!("{keep}"));
        let end = without.find(&format!("{drop};")).unwrap() + drop.len();
        without.replace_range(start..end, keep);
    }
    assert!(!without.contains("p."), "{without}");
    let edited = suite.dir.join("GroupwareSuite-no-plone.cvl");
    std::fs::write(&edited, without).unwrap();
    let staged_dir = suite.dir.join("src/GroupwareSuite");
    std::fs::copy(&edited, staged_dir.join("GroupwareSuite.cvl")).unwrap();
    let staged = staged_dir.join("GroupwareSuite.cvl");
    common::ok_in(
        &suite.dir,
        "home",
        &[
            "publish",
            "--mirror",
            &mirror,
            "repos/GroupwareSuite",
            staged.to_str().unwrap(),
        ],
    );
    suite.update_lock();
    let removal = suite.plan(&[]);
    assert_eq!(
        actions(&removal),
        [
            ("remove", "p"),
            ("resend", "d"),
            ("resend", "f"),
            ("resend", "h")
        ]
    );
    assert_eq!(removal.actions[0].reason, "no longer in the deployment");
    assert!(
        removal.actions[1].reason.starts_with("dnshosts "),
        "{}",
        removal.actions[1].reason
    );
    suite.record_applied(&removal);
    assert!(suite.plan(&[]).actions.is_empty());

    // show, graph and stop.
    let shown = suite.cvl(&["show", "plan.json"]);
    assert_eq!(shown.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("No changes"));
    let graph = suite.cvl(&["graph", "--mirror", &mirror, "AcmeSuite.cvl"]);
    let dot = String::from_utf8_lossy(&graph.stdout);
    assert!(dot.starts_with("digraph deployment {"), "{dot}");
    assert!(dot.contains("\"h\" -> \"d\" [label=\"DHCP\"];"), "{dot}");
    let stop = suite.cvl(&["stop", "AcmeSuite.cvl", "d", "--format", "json"]);
    assert_eq!(
        stop.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let stop: Plan = serde_json::from_slice(&stop.stdout).unwrap();
    assert_eq!(
        actions(&stop),
        [("stop", "m"), ("stop", "l"), ("stop", "d")]
    );
}

#[test]
fn bad_input_plans_nothing() {
    let suite = Suite::new();
    let mirror = suite.mirror();
    // A file with errors.
    std::fs::write(
        suite.dir.join("Broken.cvl"),
        "import { url => \"http://virtualappliance.org/GroupwareSuite\", cvl => \"GroupwareSuite.cvl\" } GroupwareSuite;\n\
         Broken extends GroupwareSuite { domian = \"x\"; }\n",
    )
    .unwrap();
    let out = suite.cvl(&["plan", "--no-refresh", "--mirror", &mirror, "Broken.cvl"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing was planned"), "{err}");
    // The diagnostics themselves, rendered as `cvl check` renders them.
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("did you mean `domain`?"), "{shown}");
    // An unknown object, and a missing --deploy among several.
    let out = suite.cvl(&[
        "plan",
        "--no-refresh",
        "--mirror",
        &mirror,
        "AcmeSuite.cvl",
        "--deploy",
        "Nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no object named `Nope` in AcmeSuite.cvl (it declares: AcmeSuite)"));
    // Missing secrets are named, with how to supply them.
    let out = Command::new(env!("CARGO_BIN_EXE_cvl"))
        .args(["plan", "--no-refresh", "--mirror", &mirror, "AcmeSuite.cvl"])
        .current_dir(&suite.dir)
        .env("CVL_HOME", suite.dir.join("home"))
        .env_remove("CVL_MIRRORS")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "rootpw (for d, f, h, l, m, p): `cvl secrets set AcmeSuite/rootpw` (with `cvl agent` \
             running), or set CVL_SECRET_ACMESUITE_ROOTPW (or CVL_SECRET_ACMESUITE_ROOTPW_FD"
        ),
        "{text}"
    );
    // A damaged state database is refused and kept.
    std::fs::write(suite.dir.join("home/state.db"), b"not a database at all, and longer than a header............................................................").unwrap();
    let before = std::fs::read(suite.dir.join("home/state.db")).unwrap();
    let out = suite.cvl(&["plan", "--no-refresh", "--mirror", &mirror, "AcmeSuite.cvl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a CVL state database or is damaged")
    );
    assert_eq!(
        std::fs::read(suite.dir.join("home/state.db")).unwrap(),
        before
    );
    // A stop of a deployment the utility does not run.
    std::fs::remove_file(suite.dir.join("home/state.db")).unwrap();
    let out = suite.cvl(&["stop", "AcmeSuite.cvl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("the utility runs no deployment named `AcmeSuite` (it runs none)"));
}

#[test]
fn hosts_and_pools_are_administered_and_used() {
    let suite = Suite::new();
    let cvl = |args: &[&str]| suite.cvl(args);
    let out = cvl(&["host", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("no host registered: this machine is the one host"));
    for (name, addr) in [("qemu1", "198.18.0.11"), ("qemu2", "198.18.0.12")] {
        let out = cvl(&[
            "host",
            "add",
            name,
            "--address",
            addr,
            "--memory",
            "1024",
            "--max-vms",
            "4",
            "--uplink",
            "eth0",
            // Given, so that nothing connects to the (absent) host.
            "--host-key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = cvl(&[
        "host",
        "add",
        "bad",
        "--address",
        "x",
        "--memory",
        "1",
        "--host-key",
        "nonsense",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be an OpenSSH public key"));
    let out = cvl(&["pool", "set", "networks", "200-210"]);
    assert_eq!(out.status.code(), Some(0));
    let out = cvl(&["pool", "set", "mac-prefix", "01:00:00"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unicast and locally administered"));
    let plan = suite.plan(&[]);
    // Spread over both hosts (by free memory), on network 200 (10.0.200.0/24).
    let on: Vec<&str> = plan.allocations.values().map(|a| a.host.as_str()).collect();
    assert_eq!(on.iter().filter(|h| **h == "qemu1").count(), 3, "{on:?}");
    assert_eq!(plan.vans.values().copied().collect::<Vec<_>>(), [200]);
    let ip = plan.allocations[&cvl_planner::ComponentPath("h".into())].interfaces["ethernet0"]
        .ip
        .clone();
    assert!(ip.unwrap().starts_with("10.0.200."));
    // Too little room: a clear error naming the hosts.
    cvl(&[
        "host",
        "add",
        "qemu1",
        "--address",
        "198.18.0.11",
        "--memory",
        "256",
        "--max-vms",
        "1",
        "--host-key",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    ]);
    cvl(&[
        "host",
        "add",
        "qemu2",
        "--address",
        "198.18.0.12",
        "--memory",
        "256",
        "--max-vms",
        "1",
        "--host-key",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    ]);
    let mirror = suite.mirror();
    let out = cvl(&["plan", "--no-refresh", "--mirror", &mirror, "AcmeSuite.cvl"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no host can take"), "{err}");
    assert!(err.contains("cvl host add"), "{err}");
    let out = cvl(&["host", "rm", "qemu2"]);
    assert_eq!(out.status.code(), Some(0));
    let out = cvl(&["host", "list", "--format", "json"]);
    let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hosts.as_array().unwrap().len(), 1);
}

/// Fencing from the command line: without a fence command a host is fenced
/// only on a person's word; a failing command fences nothing; a fenced host
/// takes no VMs (nothing connects to the absent hosts).
#[test]
fn a_host_is_fenced_by_its_command_or_a_persons_word_and_then_takes_nothing() {
    let suite = Suite::new();
    let cvl = |args: &[&str]| suite.cvl(args);
    let said = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    for (name, addr) in [("qemu1", "198.18.0.11"), ("qemu2", "198.18.0.12")] {
        let out = cvl(&[
            "host",
            "add",
            name,
            "--address",
            addr,
            "--memory",
            "4096",
            "--host-key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    }
    let out = cvl(&["host", "fence", "qemu1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        said(&out).contains("host qemu1 has no fence command"),
        "{}",
        said(&out)
    );
    assert!(said(&out).contains("cvl host fence qemu1 --confirm-dead"));
    let out = cvl(&[
        "host",
        "set",
        "qemu1",
        "--fence",
        "echo no power >&2; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let out = cvl(&["host", "fence", "qemu1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        said(&out).contains("failed (exit status: 4): no power: the host is not known to be off"),
        "{}",
        said(&out)
    );
    let out = cvl(&["host", "list"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("fenced"));
    // The command's environment names the host; its exit 0 fences it.
    let out = cvl(&[
        "host",
        "set",
        "qemu1",
        "--fence",
        "test \"$CVL_HOST\" = qemu1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let out = cvl(&["host", "fence", "qemu1"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(
        said(&out).contains("by its fence command"),
        "{}",
        said(&out)
    );
    let out = cvl(&["host", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(fenced "));
    let plan = suite.plan(&[]);
    assert!(
        plan.allocations.values().all(|a| a.host == "qemu2"),
        "placed on the fenced host: {:?}",
        plan.allocations
    );
    let out = cvl(&["host", "fence", "qemu2", "--confirm-dead"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let out = cvl(&["host", "list", "--format", "json"]);
    let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(hosts[1]["fenced"]
        .as_str()
        .unwrap()
        .ends_with("(confirmed dead by a person)"));
    let out = cvl(&["host", "set", "qemu1", "--no-fence"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let out = cvl(&["host", "rejoin", "qemu3"]);
    assert!(
        said(&out).contains("no host named `qemu3`"),
        "{}",
        said(&out)
    );
}

/// An import relative to the importing file (`file://./repos/X`) plans a
/// program source the executor can read wherever it runs: absolute.
#[test]
fn a_relative_import_plans_an_absolute_program_source() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = |args: &[&str]| common::ok_in(dir, "home", args);
    run(&["repo", "create", "repos/Replica"]);
    let staged = common::stage(
        dir,
        "Replica",
        &{
            let f = dir.join("Replica.cvl");
            std::fs::write(
                &f,
                "Replica extends VMAppliance {\n  vm = \"replica.vmx\";\n}\n",
            )
            .unwrap();
            f
        },
        1,
    );
    run(&["publish", "repos/Replica", staged.to_str().unwrap()]);
    std::fs::write(
        dir.join("R.cvl"),
        "import { url => \"file://./repos/Replica\", cvl => \"Replica.cvl\" } Replica;\n\
         R extends VANAppliance {\n  Replica a;\n  vanIF = \"a.ethernet0\";\n}\n",
    )
    .unwrap();
    let out = run(&["plan", "--no-refresh", "R.cvl", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let source = plan["desired"]["a"]["appliance"]["source"]
        .as_str()
        .unwrap();
    let expected = format!(
        "file://{}/repos/Replica",
        dir.canonicalize().unwrap().display()
    );
    assert!(
        source == expected || source == format!("file://{}/repos/Replica", dir.display()),
        "{source}"
    );
}

/// An appliance whose image runs no guest agent (a cloud image without
/// qemu-guest-agent) cannot take a resend: a changed parameter plans a
/// restart, and the plan says why.
#[test]
fn a_changed_parameter_of_a_guest_without_an_agent_plans_a_restart() {
    let suite = Suite::new();
    let ex = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/groupware/suite");
    // Plone 2: the same CVL, its image without a guest agent.
    let staged = common::stage(&suite.dir, "Plone", &ex.join("Plone.cvl"), 4);
    let description = staged.with_file_name("plone.vmx");
    let text = std::fs::read_to_string(&description).unwrap();
    std::fs::write(
        &description,
        format!("guest = \"cloud-init\"\nagent = false\n{text}"),
    )
    .unwrap();
    common::ok_in(
        &suite.dir,
        "home",
        &[
            "publish",
            "--mirror",
            &suite.mirror(),
            "repos/Plone",
            staged.to_str().unwrap(),
        ],
    );
    suite.update_lock();
    let first = suite.plan(&[]);
    assert_eq!(first.actions.len(), 6);
    suite.record_applied(&first);

    let file = suite.dir.join("AcmeSuite.cvl");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("domain = \"acme.org\"", "domain = \"acme.com\""),
    )
    .unwrap();
    let plan = suite.plan(&[]);
    assert_eq!(
        actions(&plan),
        [
            ("resend", "d"),
            ("resend", "h"),
            ("resend", "l"),
            ("resend", "m"),
            ("update", "p")
        ]
    );
    let p = plan.actions.iter().find(|a| a.component.0 == "p").unwrap();
    assert_eq!(
        p.reason.to_string(),
        "resend needs a restart: p has no guest agent (domain \"acme.org\" -> \"acme.com\")"
    );
    // The terminal plan says the same.
    let shown = suite.cvl(&["show", "plan.json"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("resend needs a restart: p has no guest agent"),
        "{shown}"
    );
}
