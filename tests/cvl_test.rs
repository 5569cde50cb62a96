//! `cvl test`, as a publisher runs it before publishing: the suite's DNS
//! (built by `cvl build` from its recipe) passes the guest contract and its
//! own check, before and after a resend that changes its domain, with JUnit
//! output that validates against the schema CI systems read; and three
//! broken variants of it (tests/recipes/) each fail the contract item they
//! break: one never ready, one that ignores shutdown, one whose reload hook
//! reboots the VM. Every test checks that the sandbox (its namespace, its
//! folder, its QEMU) is gone afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cvl_e2e::*;

/// DNS's parameters, as a publisher writes them for its test.
const DNS_PARAMS: &str = "# DNS's test\nhostname=ns\ndomain=example.org\n\
    dnshosts={ name => \"www\", ip => \"10.9.9.9\" }, { name => \"mail\", ip => \"10.9.9.10\" }\n";

/// What a sensitive value is, to find it where it must never be.
const CANARY: &str = "Canary-DnsTest-Rootpw-5Kq";

/// `cvl build RECIPE` into `tmp`: the folder `cvl test` takes.
fn build(cvl: &Path, tmp: &Path, recipe: &str) -> PathBuf {
    let out = tmp.join(recipe.rsplit('/').next().unwrap());
    let built = Command::new(cvl)
        .arg("build")
        .arg(workspace().join(recipe))
        .arg(&out)
        .env("CVL_HOME", tmp.join("home"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "cvl build {recipe}:\n{}",
        text(&built)
    );
    out
}

/// `cvl test ARGS`: what it said, after checking that its sandbox is gone.
fn cvl_test(cvl: &Path, tmp: &Path, args: &[&str]) -> Output {
    let child = Command::new(cvl)
        .arg("test")
        .args(args)
        .arg("--consoles")
        .arg(tmp.join("consoles"))
        .current_dir(tmp)
        .env("CVL_HOME", tmp.join("home"))
        .env("CVL_ACCEL", "tcg")
        .env("CVL_SECRET_DNS_ROOTPW", CANARY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sandbox = format!("cvl-test-{}-", child.id());
    let out = child.wait_with_output().unwrap();
    eprintln!("cvl test {}:\n{}", args.join(" "), text(&out));
    let namespaces = sh(&["ip", "netns", "list"]);
    assert!(
        !namespaces.contains(&sandbox),
        "the sandbox's namespace is left: {namespaces}"
    );
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&sandbox))
        .collect();
    assert!(left.is_empty(), "the sandbox's folder is left: {left:?}");
    // pgrep exits 1 when nothing matches: no QEMU at all runs.
    let qemus = Command::new("pgrep")
        .args(["-af", "qemu-system"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap();
    assert!(
        !qemus.contains(&sandbox),
        "a QEMU of the sandbox runs: {qemus}"
    );
    assert!(
        !contains(&out.stdout, CANARY) && !contains(&out.stderr, CANARY),
        "a sensitive value was printed"
    );
    out
}

fn steps(out: &Output) -> Vec<serde_json::Value> {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)));
    report["steps"].as_array().unwrap().clone()
}

fn step<'a>(steps: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    steps
        .iter()
        .find(|s| s["name"] == name && s["phase"] == "contract")
        .unwrap_or_else(|| panic!("no step `{name}` in {steps:#?}"))
}

fn params(tmp: &Path) -> String {
    let path = tmp.join("dns.params");
    std::fs::write(&path, DNS_PARAMS).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_suites_dns_passes_its_test_and_the_junit_report_validates() {
    let cvl = cvl_binary();
    let tmp = tempfile::tempdir().unwrap();
    let dns = build(&cvl, tmp.path(), "appliances/DNS");
    let params = params(tmp.path());
    // The user's own utility service runs beside the test, on the user's
    // home: the test's deployment lives in the sandbox's state alone.
    let log = std::fs::File::create(tmp.path().join("service.log")).unwrap();
    let mut service = Command::new(&cvl)
        .args([
            "utility",
            "run",
            "--interval",
            "2s",
            "--survey-interval",
            "1s",
        ])
        .env("CVL_HOME", tmp.path().join("home"))
        .env("CVL_ACCEL", "tcg")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let out = cvl_test(
        &cvl,
        tmp.path(),
        &[
            dns.to_str().unwrap(),
            "--params",
            &params,
            "--resend",
            "domain=example.net",
            "--format",
            "junit",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let _ = service.kill();
    let _ = service.wait();
    let said = std::fs::read_to_string(tmp.path().join("service.log")).unwrap();
    assert!(said.contains("\"event\":\"round\""), "{said}");
    assert!(
        !said.contains("DNSTest") && !said.contains("\"deployments\":1"),
        "the user's service saw the test's deployment:\n{said}"
    );
    let status = Command::new(&cvl)
        .arg("status")
        .env("CVL_HOME", tmp.path().join("home"))
        .output()
        .unwrap();
    assert!(!text(&status).contains("DNSTest"), "{}", text(&status));
    let xml = tmp.path().join("dns.xml");
    std::fs::write(&xml, &out.stdout).unwrap();
    let valid = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(workspace().join("tests/junit.xsd"))
        .arg(&xml)
        .output()
        .expect("xmllint (libxml2-utils) runs");
    assert!(
        valid.status.success(),
        "the JUnit report is not valid:\n{}",
        text(&valid)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    // Every contract item, and DNS's check before and after the resend
    // (which changed the domain: its check found the new one).
    for name in [
        "publish",
        "ready",
        "parameters",
        "data disk initialized",
        "resend",
        "parameters after resend",
        "clean shutdown",
        "second boot",
        "data disk kept",
    ] {
        assert!(
            report.contains(&format!("classname=\"DNS.contract\" name=\"{name}\"")),
            "no test case `{name}` in:\n{report}"
        );
    }
    assert!(
        report.contains("classname=\"DNS.checks\" name=\"names\""),
        "{report}"
    );
    assert!(
        report.contains("classname=\"DNS.checks after resend\" name=\"names\""),
        "{report}"
    );
    assert!(
        report.contains("www.example.net is 10.9.9.9 (authoritative)"),
        "{report}"
    );
    assert!(report.contains("failures=\"0\" skipped=\"0\""), "{report}");
    // Each boot's console is kept; no console holds the sensitive value.
    for boot in ["first-boot", "second-boot"] {
        let console = tmp.path().join(format!("consoles/DNS-{boot}.console.log"));
        assert!(console.is_file(), "no {}", console.display());
        let bytes = std::fs::read(&console).unwrap();
        assert!(!contains(&bytes, CANARY));
    }

    // What cannot be tested says why and how to fix it, exit 2: DNS without
    // its required parameters, a parameters file with a bad line.
    let missing = cvl_test(&cvl, tmp.path(), &[dns.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains(
            "required parameter `hostname` has no value: give it with --params FILE (`hostname=VALUE` lines)"
        ),
        "{}",
        text(&missing)
    );
    // A misspelt name: its line of the parameters file, and the fix.
    let typo = tmp.path().join("typo.params");
    std::fs::write(&typo, "hostname=ns\ndomian=example.org\n").unwrap();
    let out = cvl_test(
        &cvl,
        tmp.path(),
        &[dns.to_str().unwrap(), "--params", typo.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "{}:2: `DNS` has no parameter or component `domian`; did you mean `domain`?",
            typo.display()
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "required parameter `domain` has no value: add `domain=VALUE` to {}",
            typo.display()
        )),
        "{said}"
    );
    // `cvl check` says the same of that file before anything boots (the
    // appliance named in its first line, as it lies elsewhere).
    let named = tmp.path().join("named.params");
    std::fs::write(
        &named,
        format!(
            "# appliance: {}\nhostname=ns\ndomian=example.org\n",
            dns.join("DNS.cvl").display()
        ),
    )
    .unwrap();
    let checked = Command::new(&cvl)
        .args(["--color", "never", "check"])
        .arg(&named)
        .env("CVL_HOME", tmp.path().join("home"))
        .output()
        .unwrap();
    assert_eq!(checked.status.code(), Some(1), "{}", text(&checked));
    let said = text(&checked);
    assert!(
        said.contains("`DNS` has no parameter or component `domian`; did you mean `domain`?")
            && said.contains("named.params:3:1")
            && said.contains("required parameter `domain` has no value"),
        "{said}"
    );
    let bad = tmp.path().join("bad.params");
    std::fs::write(&bad, "domain=example.org\nhostname\n").unwrap();
    let out = cvl_test(
        &cvl,
        tmp.path(),
        &[dns.to_str().unwrap(), "--params", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("bad.params:2: `hostname` is not NAME=VALUE"),
        "{}",
        text(&out)
    );
}

/// Mail requires the suite's LDAP (its users, the CA that signs its
/// certificate); tested alone, as a publisher tests it, it runs without a
/// directory (no users, its own certificate) and says so in its checks,
/// which pass: SMTP greets with STARTTLS, IMAP offers it.
#[test]
fn mail_passes_its_test_alone_without_a_directory() {
    let cvl = cvl_binary();
    let tmp = tempfile::tempdir().unwrap();
    let mail = build(&cvl, tmp.path(), "appliances/Mail");
    let params = tmp.path().join("mail.params");
    std::fs::write(
        &params,
        "domain=example.org\ncountry=US\nstate=CA\ncity=Stanford\norg=Example\nou=IT\ncertemail=admin@example.org\n",
    )
    .unwrap();
    let out = cvl_test(
        &cvl,
        tmp.path(),
        &[
            mail.to_str().unwrap(),
            "--params",
            params.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let steps = steps(&out);
    let ready = step(&steps, "ready");
    eprintln!("Mail alone: {}", ready["message"]);
    let checks: Vec<&serde_json::Value> = steps.iter().filter(|s| s["phase"] == "checks").collect();
    assert_eq!(checks.len(), 2, "{steps:#?}");
    // A passing check's first line is its message.
    let said: Vec<&str> = checks
        .iter()
        .map(|s| s["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        said,
        [
            "IMAP on 143 offers STARTTLS",
            "greets: 220 app.example.org ESMTP"
        ],
        "{steps:#?}"
    );
    // Its whole output too: what it did without a directory.
    for check in &checks {
        let output = check["output"].as_str().unwrap_or_default();
        assert!(
            output.contains("no directory configured (ldaphost is unset)"),
            "{check:#}"
        );
    }
}

/// `cvl test` of the broken variant `recipe` of DNS with `more` options:
/// it fails (exit 1); its steps.
fn broken(recipe: &str, more: &[&str]) -> (tempfile::TempDir, Vec<serde_json::Value>) {
    let cvl = cvl_binary();
    let tmp = tempfile::tempdir().unwrap();
    let broken = build(&cvl, tmp.path(), recipe);
    let params = params(tmp.path());
    let mut args = vec![
        broken.to_str().unwrap(),
        "--params",
        &params,
        "--format",
        "json",
    ];
    args.extend(more);
    let out = cvl_test(&cvl, tmp.path(), &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let steps = steps(&out);
    (tmp, steps)
}

#[test]
fn an_appliance_never_ready_fails_ready_and_its_console_is_kept() {
    let (tmp, steps) = broken("tests/recipes/NeverReady", &["--ready-timeout", "15"]);
    assert_eq!(step(&steps, "publish")["outcome"], "passed");
    let ready = step(&steps, "ready");
    assert_eq!(ready["outcome"], "failed", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("not ready within 15 s"),
        "{ready}"
    );
    for later in ["parameters", "resend", "clean shutdown", "data disk kept"] {
        let s = step(&steps, later);
        assert_eq!(s["outcome"], "skipped", "{s}");
        assert_eq!(s["message"], "not run: `ready` failed");
    }
    assert!(tmp.path().join("consoles/DNS-ready.console.log").is_file());
}

#[test]
fn an_appliance_that_ignores_shutdown_fails_clean_shutdown() {
    let (_tmp, steps) = broken("tests/recipes/IgnoresShutdown", &["--stop-timeout", "5"]);
    for passed in ["ready", "parameters", "data disk initialized", "resend"] {
        assert_eq!(step(&steps, passed)["outcome"], "passed", "{passed}");
    }
    let shutdown = step(&steps, "clean shutdown");
    assert_eq!(shutdown["outcome"], "failed", "{shutdown}");
    assert!(
        shutdown["message"]
            .as_str()
            .unwrap()
            .contains("did not power off within 5 s"),
        "{shutdown}"
    );
    assert_eq!(step(&steps, "second boot")["outcome"], "skipped");
}

#[test]
fn an_appliance_whose_reload_hook_reboots_fails_resend() {
    let (_tmp, steps) = broken("tests/recipes/ReloadRestarts", &[]);
    assert_eq!(step(&steps, "ready")["outcome"], "passed");
    let resend = step(&steps, "resend");
    assert_eq!(resend["outcome"], "failed", "{resend}");
    assert!(
        resend["message"]
            .as_str()
            .unwrap()
            .contains("the guest restarted during the resend"),
        "{resend}"
    );
    assert_eq!(
        step(&steps, "parameters after resend")["outcome"],
        "skipped"
    );
}

/// A repository holding `recipe`'s build as version 1, as its publisher
/// has it.
fn repository(cvl: &Path, tmp: &Path, recipe: &str, name: &str) -> PathBuf {
    let v1 = build(cvl, tmp, recipe);
    let repo = tmp.join("repo");
    for args in [
        vec![
            "repo".into(),
            "create".into(),
            repo.clone().into_os_string(),
        ],
        vec![
            "publish".into(),
            repo.clone().into_os_string(),
            v1.join(format!("{name}.cvl")).into_os_string(),
        ],
    ] {
        let out = Command::new(cvl)
            .args(&args)
            .env("CVL_HOME", tmp.join("home"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}:\n{}", text(&out));
    }
    repo
}

/// Serves the folder `root` over HTTP on loopback, as `/DNS/...`: the
/// repository URL a subscriber would import. Files only, GET only.
fn serve(root: PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    return;
                }
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let rel = path.trim_start_matches("/DNS/");
                let body = (!rel.contains(".."))
                    .then(|| std::fs::read(root.join(rel)).ok())
                    .flatten();
                let (status, body) = match body {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", b"no".to_vec()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            });
        }
    });
    format!("http://127.0.0.1:{port}/DNS")
}

fn versions(repo: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo.join("versions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `cvl publish --test`: the held-back DNS whose data format has no
/// migration passes on a fresh disk but fails on version 1's data, naming
/// its check, and nothing is published; DNS v2 passes the upgrade path
/// (update, contract, rollback onto the data from before the update), its
/// previous version read from the repository served over HTTP as a
/// subscriber reads it, and is published with the test recorded, which
/// `cvl repo log` shows.
#[test]
fn publish_tests_the_upgrade_path_and_refuses_a_broken_migration() {
    let cvl = cvl_binary();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repository(&cvl, tmp.path(), "appliances/DNS", "DNS");
    let repo_arg = repo.to_str().unwrap();
    let params = params(tmp.path());
    let url = serve(repo.clone());
    let publish = |dir: &Path, previous: &str| {
        let out = Command::new(&cvl)
            .args(["publish", repo_arg])
            .arg(dir.join("DNS.cvl"))
            .args(["--test", "--params", &params, "--previous", previous])
            .arg("--consoles")
            .arg(tmp.path().join("consoles"))
            .env("CVL_HOME", tmp.path().join("home"))
            .env("CVL_ACCEL", "tcg")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!("cvl publish --test {}:\n{}", dir.display(), text(&out));
        out
    };

    let broken = build(&cvl, tmp.path(), "tests/recipes/BrokenMigration");
    let out = publish(&broken, repo_arg);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("FAIL  checks: format")
            && said.contains("the data is at format 1: this version reads only format 2"),
        "{said}"
    );
    assert!(said.contains("ok    previous checks: names"), "{said}");
    assert!(said.contains("nothing was written into"), "{said}");
    assert_eq!(versions(&repo), ["1"], "a refused publish wrote a version");

    let v2 = build(&cvl, tmp.path(), "appliances/DNS/v2");
    let out = publish(&v2, &format!("{url}@1"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    for step in [
        "ok    upgrade: update",
        "ok    upgrade: data disk kept by the update",
        "ok    upgrade: rollback",
        "ok    upgrade: data disk after rollback",
        "ok    previous checks after rollback: names",
    ] {
        assert!(said.contains(step), "no `{step}` in:\n{said}");
    }
    assert_eq!(versions(&repo), ["1", "2"]);
    let log = Command::new(&cvl)
        .args(["repo", "log", repo_arg, "--format", "json"])
        .env("CVL_HOME", tmp.path().join("home"))
        .output()
        .unwrap();
    let index: serde_json::Value = serde_json::from_slice(&log.stdout).unwrap();
    let tested = index["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 2)
        .map(|v| v["tested"].clone())
        .unwrap();
    assert!(tested["passed"].as_u64().unwrap() >= 15, "{tested}");
    assert_eq!(tested["skipped"], 0, "{tested}");
    assert_eq!(tested["upgrade_from"], format!("{url}@1"));
    let log = Command::new(&cvl)
        .args(["repo", "log", repo_arg])
        .env("CVL_HOME", tmp.path().join("home"))
        .output()
        .unwrap();
    let said = text(&log);
    assert!(
        said.contains("steps passed, 0 skipped, the upgrade from"),
        "{said}"
    );
    assert!(
        said.contains("not tested before it was published"),
        "{said}"
    );
}

/// The suite's LDAP version 2 against version 1: it migrates version 1's
/// directory (its own check finds format 2 and ou=groups), passes the
/// contract there, and a rollback puts version 1 back on the directory as
/// it was.
#[test]
fn ldap_v2_upgrades_from_v1_and_rolls_back() {
    let cvl = cvl_binary();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repository(&cvl, tmp.path(), "appliances/LDAP", "LDAP");
    let v2 = build(&cvl, tmp.path(), "appliances/LDAP/v2");
    let params = tmp.path().join("ldap.params");
    std::fs::write(
        &params,
        "domain=example.org\ncountry=US\nstate=CA\ncity=Springfield\norg=Acme\nou=IT\ncertemail=admin@example.org\n",
    )
    .unwrap();
    let out = cvl_test(
        &cvl,
        tmp.path(),
        &[
            v2.to_str().unwrap(),
            "--params",
            params.to_str().unwrap(),
            "--previous",
            repo.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let steps = steps(&out);
    assert!(steps.iter().all(|s| s["outcome"] == "passed"), "{steps:#?}");
    let format = steps
        .iter()
        .find(|s| s["phase"] == "checks" && s["name"] == "format")
        .expect("LDAP v2's own check of its data format");
    assert!(
        format["message"]
            .as_str()
            .unwrap()
            .contains("at format 2, with ou=groups"),
        "{format}"
    );
    for name in ["update", "rollback", "data disk after rollback"] {
        assert!(steps.iter().any(|s| s["name"] == name), "no step {name}");
    }
    assert!(steps
        .iter()
        .any(|s| s["phase"] == "previous checks after rollback" && s["name"] == "directory"));
}
