//! Sensitive values from the user agent to real guests (real QEMU, in a
//! network namespace the test creates): canaries set through `cvl agent` /
//! `cvl secrets`, with no secret in the environment, arrive in every guest
//! that takes them; during the apply no process's command line or
//! environment holds one; afterwards no file the utility, the host agent or
//! QEMU wrote (state, saved plan, vault, VM folders, logs, /dev/shm) does.
//! A changed value plans and applies exactly the resends of its takers.
//! (The same through the environment, as CI supplies them: `local.rs`.)

use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cvl_e2e::*;

const CANARIES: [(&str, &str); 4] = [
    ("AcmeSuite/rootpw", "Agent-Canary-Root-5Y1x"),
    ("AcmeSuite/rootdnpass", "Agent-Canary-Dn-5Y2x"),
    ("AcmeSuite/proxypw", "Agent-Canary-Proxy-5Y3x"),
    ("AcmeSuite/smtppw", "Agent-Canary-Smtp-5Y4x"),
];
const NEW_PROXYPW: &str = "Agent-Canary-Proxy-5Y9x";

fn with_stdin(u: &Utility, args: &[&str], input: &str) -> String {
    let mut child = u
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "cvl {args:?}: {}", text(&out));
    text(&out)
}

#[test]
fn secrets_from_the_agent_reach_the_guests_and_rest_nowhere() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, u, _ns) = setup("cvl-e2e-secrets");
    let u = Utility {
        env_secrets: false,
        env: vec![(
            "CVL_AGENT_SOCK".into(),
            u.dir.join("home/run/agent.sock").display().to_string(),
        )],
        ..u
    };
    u.ok(&["agent", "--lifetime", "30m"]);
    with_stdin(
        &u,
        &["secrets", "unlock", "--passphrase-stdin"],
        "e2e passphrase\n",
    );
    for (name, value) in CANARIES {
        with_stdin(
            &u,
            &["secrets", "set", name, "--stdin"],
            &format!("{value}\n"),
        );
    }

    // A saved plan, then the apply of it, the process list sampled all along.
    let planned = u.ok(&["plan", "AcmeSuite.cvl", "--out", "suite.plan"]);
    assert!(!planned.contains("not supplied"), "{planned}");
    let mut needles: Vec<String> = CANARIES.iter().map(|(_, v)| v.to_string()).collect();
    needles.push(NEW_PROXYPW.to_string());
    let done = Arc::new(AtomicBool::new(false));
    let sampler = sample_processes(needles.clone(), done.clone(), |_| true);
    let said = u.ok(&[
        "apply",
        "suite.plan",
        "--auto-approve",
        "--stop-timeout",
        "20",
    ]);
    assert!(said.contains("Applied 6 action(s) to AcmeSuite"), "{said}");

    // Inside the guests: rootpw in all six, proxypw in LDAP and Mail.
    for c in ["f", "h", "d", "l", "m", "p"] {
        let params = u.params(c);
        assert!(
            params.contains(&format!("rootpw={}\n", escape(CANARIES[0].1))),
            "{c}: no rootpw"
        );
    }
    for c in ["l", "m"] {
        assert!(
            u.params(c)
                .contains(&format!("proxypw={}\n", escape(CANARIES[2].1))),
            "{c}"
        );
    }

    // A new proxypw: exactly the resends of l and m, applied without restart.
    with_stdin(
        &u,
        &["secrets", "set", "AcmeSuite/proxypw", "--stdin"],
        &format!("{NEW_PROXYPW}\n"),
    );
    let plan: serde_json::Value =
        serde_json::from_str(&u.ok(&["plan", "AcmeSuite.cvl", "--format", "json"])).unwrap();
    let actions: Vec<(String, String)> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().into(),
                a["component"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [("resend".into(), "l".into()), ("resend".into(), "m".into())],
        "{plan:#}"
    );
    let pids = u.pids();
    let said = u.ok(&["apply", "AcmeSuite.cvl", "--auto-approve"]);
    assert!(said.contains("Applied 2 action(s)"), "{said}");
    assert_eq!(u.pids(), pids, "a resend restarted a guest");
    assert!(u
        .params("m")
        .contains(&format!("proxypw={}\n", escape(NEW_PROXYPW))));

    done.store(true, Ordering::Relaxed);
    let found = sampler.join().unwrap();
    assert!(found.is_empty(), "secrets in the process list: {found:#?}");

    // Nothing at rest: every file under the test's folder (the utility's
    // home with its state, vault and VM folders, the saved plan) but the
    // repositories' program disks, and /dev/shm.
    let mut files = walk(&u.dir);
    files.retain(|f| {
        !f.to_string_lossy().contains("/repos/") && !f.to_string_lossy().contains("/cache/")
    });
    assert!(files.iter().any(|f| f.ends_with("home/vault")), "no vault");
    assert!(
        files.iter().any(|f| f.ends_with("suite.plan")),
        "no saved plan"
    );
    assert!(files.iter().any(|f| f.ends_with("state.db")), "no state");
    for f in files
        .iter()
        .chain(walk(std::path::Path::new("/dev/shm")).iter())
    {
        let bytes = std::fs::read(f).unwrap_or_default();
        for n in &needles {
            assert!(!contains(&bytes, n), "{} holds {n}", f.display());
        }
    }
    u.stop_all();
    u.ok(&["agent", "--stop"]);
    assert_no_params_left(&u);
}
