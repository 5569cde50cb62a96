//! Sensitive values at plan time through the real `cvl agent` (a detached
//! process with its own socket and vault): set through `cvl secrets`, kept
//! only encrypted, used by `cvl plan` with no environment; a changed value
//! plans exactly the resends of the appliances that take it; the same
//! from a file descriptor (CI). And the refusals: wrong passphrase, a
//! damaged, truncated or newer vault, no agent, a socket of another user,
//! each a clear error that leaves the vault as it was.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

mod common;
use common::suite::{actions, assert_no_secret, Suite};

const CANARY: &str = "Vault-Canary-Proxy-41x";

/// The suite, with `cvl` taking its secrets from the agent only.
fn suite() -> Suite {
    let mut suite = Suite::new();
    suite.env_secrets = false;
    let sock = suite.dir.join("home/run/agent.sock");
    suite.env = vec![("CVL_AGENT_SOCK".into(), sock.display().to_string())];
    suite
}

/// `program` in the suite's folder with its utility home and environment.
fn base(suite: &Suite, program: &str) -> Command {
    let mut c = Command::new(program);
    c.current_dir(&suite.dir)
        .env_remove("CVL_MIRRORS")
        .env("CVL_HOME", suite.dir.join("home"))
        .envs(suite.env.iter().map(|(k, v)| (k, v)));
    c
}

/// Runs `command` with `input` on its stdin; its output.
fn feed(mut command: Command, input: &str) -> Output {
    let mut child = command
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
    child.wait_with_output().unwrap()
}

/// `cvl ARGS` with `input` on stdin.
fn with_stdin(suite: &Suite, args: &[&str], input: &str) -> Output {
    let mut command = base(suite, env!("CARGO_BIN_EXE_cvl"));
    command.args(args);
    feed(command, input)
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    said(&out)
}

/// The agent of a suite, stopped (and killed if it must be) on drop.
struct AgentGuard<'a> {
    suite: &'a Suite,
    pid: u32,
}

impl AgentGuard<'_> {
    fn start(suite: &Suite) -> AgentGuard<'_> {
        ok(suite.cvl(&["agent", "--lifetime", "10m"]));
        let status: serde_json::Value =
            serde_json::from_str(&ok_stdout(suite.cvl(&["agent", "--status"]))).unwrap();
        AgentGuard {
            suite,
            pid: status["pid"].as_u64().unwrap() as u32,
        }
    }
}

impl Drop for AgentGuard<'_> {
    fn drop(&mut self) {
        let _ = self.suite.cvl(&["agent", "--stop"]);
        // SAFETY: a signal to the agent this test started.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGKILL);
        }
    }
}

fn ok_stdout(out: Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn plan_json(suite: &Suite, extra: &[&str]) -> cvl_planner::plan::Plan {
    suite.plan(extra)
}

#[test]
fn values_from_the_agent_plan_and_a_changed_one_resends_exactly_its_takers() {
    let suite = suite();
    let values = [
        ("AcmeSuite/rootpw", "Vault-Canary-Root-41x"),
        ("AcmeSuite/rootdnpass", "Vault-Canary-Dn-41x"),
        ("AcmeSuite/proxypw", CANARY),
        ("AcmeSuite/smtppw", "Vault-Canary-Smtp-41x"),
    ];

    // No agent: a clear error naming the way to start one.
    let out = suite.cvl(&["secrets", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        said(&out).contains("start one with `cvl agent`"),
        "{}",
        said(&out)
    );

    let agent = AgentGuard::start(&suite);
    // Locked, no terminal: says how to unlock.
    let out = with_stdin(
        &suite,
        &["secrets", "set", "AcmeSuite/rootpw", "--stdin"],
        "x\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(said(&out).contains("--passphrase-stdin"), "{}", said(&out));
    ok(with_stdin(
        &suite,
        &["secrets", "unlock", "--passphrase-stdin"],
        "correct horse battery\n",
    ));
    for (name, value) in values {
        ok(with_stdin(
            &suite,
            &["secrets", "set", name, "--stdin"],
            &format!("{value}\n"),
        ));
    }
    let listed = ok_stdout(suite.cvl(&["secrets", "list", "--format", "json"]));
    let names: Vec<String> = serde_json::from_str(&listed).unwrap();
    assert_eq!(names.len(), 4);
    assert!(!listed.contains("Canary"), "list printed a value: {listed}");

    // The plan takes all four from the agent (none missing), and nothing
    // but fingerprints reaches the plan or the state.
    let plan = plan_json(&suite, &[]);
    assert!(
        plan.missing_secrets.is_empty(),
        "{:?}",
        plan.missing_secrets
    );
    suite.record_applied(&plan);
    assert!(plan_json(&suite, &[]).actions.is_empty(), "converged");

    // A new proxypw: resends to exactly l and m (GroupwareSuite passes
    // proxypw to those two), shown as a fingerprint change only.
    ok(with_stdin(
        &suite,
        &["secrets", "set", "AcmeSuite/proxypw", "--stdin"],
        "Vault-Canary-Proxy-42x\n",
    ));
    let plan = plan_json(&suite, &[]);
    assert_eq!(actions(&plan), vec![("resend", "l"), ("resend", "m")]);
    let human = ok_stdout(suite.cvl(&[
        "plan",
        "--no-refresh",
        "AcmeSuite.cvl",
        "--mirror",
        &suite.mirror(),
    ]));
    assert!(human.contains("proxypw"), "{human}");
    assert!(
        human.contains("proxypw (sensitive) fingerprint "),
        "{human}"
    );
    assert!(!human.contains("42x"), "{human}");

    // CI: the environment and a descriptor win over the agent.
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(format!("{CANARY}\n").as_bytes()).unwrap();
    drop(writer);
    let out = {
        use std::os::fd::AsRawFd;
        let fd = reader.as_raw_fd();
        let mut c = base(&suite, env!("CARGO_BIN_EXE_cvl"));
        c.args([
            "plan",
            "--no-refresh",
            "--mirror",
            &suite.mirror(),
            "AcmeSuite.cvl",
            "--format",
            "json",
        ])
        .env("CVL_SECRET_ACMESUITE_PROXYPW_FD", "7");
        // SAFETY: dup2 in the child before exec, onto a descriptor number
        // that names nothing else there.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(fd, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c.output().unwrap()
    };
    let from_fd: cvl_planner::plan::Plan = serde_json::from_str(&ok_stdout(out)).unwrap();
    assert!(
        from_fd.actions.is_empty(),
        "the descriptor's value was not used"
    );
    let out = suite.cvl(&[
        "plan",
        "--no-refresh",
        "AcmeSuite.cvl",
        "--mirror",
        &suite.mirror(),
    ]);
    let out_env = base(&suite, env!("CARGO_BIN_EXE_cvl"))
        .args([
            "plan",
            "--no-refresh",
            "--mirror",
            &suite.mirror(),
            "AcmeSuite.cvl",
            "--format",
            "json",
        ])
        .env("CVL_AGENT_SOCK", suite.dir.join("nowhere.sock"))
        .env("CVL_SECRET_ACMESUITE_PROXYPW", CANARY)
        .output()
        .unwrap();
    let env_only: cvl_planner::plan::Plan = serde_json::from_str(&ok_stdout(out_env)).unwrap();
    let missing: Vec<&str> = env_only
        .missing_secrets
        .iter()
        .map(|m| m.param.as_str())
        .collect();
    assert_eq!(
        missing,
        ["rootdnpass", "rootpw", "smtppw"],
        "no agent: those three lack a value"
    );
    assert!(said(&out).contains("resend"));

    // No value rests in plaintext: the state, the saved plan, the vault,
    // every file in the utility's home.
    for f in walk(&suite.dir) {
        if f.extension().is_some_and(|e| e == "qcow2") {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert_no_secret(&bytes, &f.display().to_string());
        for (_, v) in values {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{} holds {v}",
                f.display()
            );
        }
    }
    drop(agent);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

#[test]
fn bad_vaults_and_foreign_sockets_are_refused_and_nothing_is_overwritten() {
    let suite = suite();
    let vault = suite.dir.join("home/vault");
    {
        let _agent = AgentGuard::start(&suite);
        ok(with_stdin(
            &suite,
            &["secrets", "unlock", "--passphrase-stdin"],
            "right\n",
        ));
        ok(with_stdin(
            &suite,
            &["secrets", "set", "AcmeSuite/rootpw", "--stdin"],
            "v1\n",
        ));
        ok(suite.cvl(&["secrets", "lock"]));
        // Wrong passphrase.
        let before = std::fs::read(&vault).unwrap();
        let out = with_stdin(
            &suite,
            &["secrets", "unlock", "--passphrase-stdin"],
            "wrong\n",
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(said(&out).contains("wrong passphrase"), "{}", said(&out));
        assert_eq!(std::fs::read(&vault).unwrap(), before);
        // A socket that is not ours.
        let sock = suite.dir.join("home/run/agent.sock");
        chown(&sock, 65534);
        let out = suite.cvl(&["secrets", "list"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(said(&out).contains("refusing to use it"), "{}", said(&out));
        let out = suite.cvl(&[
            "plan",
            "--no-refresh",
            "AcmeSuite.cvl",
            "--mirror",
            &suite.mirror(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "plan went on with a foreign socket"
        );
        chown(&sock, 0);
    }

    let good = std::fs::read(&vault).unwrap();
    let mut newer = good.clone();
    newer[8] = 9;
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x40;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("damaged", flipped, "wrong passphrase for the vault"),
        ("truncated", good[..50].to_vec(), "damaged or not a vault"),
        ("newer", newer, "written by a newer cvl (format 9"),
        ("not a vault", b"hello".to_vec(), "damaged or not a vault"),
    ];
    for (what, bytes, expect) in cases {
        std::fs::write(&vault, &bytes).unwrap();
        let _agent = AgentGuard::start(&suite);
        let out = with_stdin(
            &suite,
            &["secrets", "unlock", "--passphrase-stdin"],
            "right\n",
        );
        assert_eq!(out.status.code(), Some(2), "{what}: {}", said(&out));
        assert!(said(&out).contains(expect), "{what}: {}", said(&out));
        assert_eq!(
            std::fs::read(&vault).unwrap(),
            bytes,
            "{what}: the vault was rewritten"
        );
    }
}

fn chown(path: &std::path::Path, uid: u32) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: lchown on a path this test created.
    assert_eq!(unsafe { libc::lchown(c.as_ptr(), uid, uid) }, 0);
}

#[test]
fn with_a_terminal_plan_unlocks_the_agent_and_asks_for_what_it_lacks() {
    let suite = suite();
    let _agent = AgentGuard::start(&suite);
    ok(with_stdin(
        &suite,
        &["secrets", "unlock", "--passphrase-stdin"],
        "tty pass\n",
    ));
    for name in ["rootpw", "rootdnpass", "smtppw"] {
        let path = format!("AcmeSuite/{name}");
        ok(with_stdin(
            &suite,
            &["secrets", "set", &path, "--stdin"],
            "v\n",
        ));
    }
    ok(suite.cvl(&["secrets", "lock"]));
    // `script` gives cvl a terminal; what we pipe in is typed there.
    let command = format!(
        "{} plan --mirror {} AcmeSuite.cvl --format json --out asked.plan",
        env!("CARGO_BIN_EXE_cvl"),
        suite.mirror()
    );
    let mut script = base(&suite, "script");
    script.args(["-qec", &command, "/dev/null"]);
    let out = feed(script, "tty pass\nTyped-Proxy-Value\n");
    let transcript = said(&out);
    assert!(out.status.success(), "{transcript}");
    assert!(
        transcript.contains("Passphrase for the vault"),
        "{transcript}"
    );
    assert!(
        transcript.contains("Sensitive value AcmeSuite/proxypw: "),
        "{transcript}"
    );
    let plan: cvl_planner::plan::Plan =
        serde_json::from_slice(&std::fs::read(suite.dir.join("asked.plan")).unwrap()).unwrap();
    assert!(
        plan.missing_secrets.is_empty(),
        "{:?}",
        plan.missing_secrets
    );
    // The typed value was kept in the agent (and its vault).
    let listed = ok_stdout(suite.cvl(&["secrets", "list"]));
    assert!(listed.contains("AcmeSuite/proxypw"), "{listed}");
}
