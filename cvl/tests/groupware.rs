//! The paper's Groupware, end to end through the `cvl` binary: each appliance
//! published into a repository of its own (DNS up to version 3 and Firewall
//! up to version 5, as Figure 3 pins them), the paper's URLs mirrored to
//! those repositories, the user's file checked, locked and evaluated.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

mod common;

fn cvl(dir: &Path, args: &[&str]) -> Output {
    common::cvl_in(dir, "home", args)
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    common::ok_in(dir, "home", args)
}

/// The paper's URLs, mapped to the test's repositories.
fn mirror(dir: &Path) -> String {
    format!(
        "http://virtualappliance.org/=file://{}/repos/",
        dir.display()
    )
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/groupware")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// Publishes `file` (from the examples) into `repos/NAME` `times` times.
fn publish(dir: &Path, name: &str, file: &Path, times: usize) {
    let repo = format!("repos/{name}");
    if !dir.join(&repo).exists() {
        common::create_signed(dir, &repo);
    }
    // Staged as a publisher keeps it: with a VM description and a disk.
    let file = common::stage(dir, name, file, 4);
    let key = common::key(dir);
    for _ in 0..times {
        ok(
            dir,
            &[
                "publish",
                "--mirror",
                &mirror(dir),
                &repo,
                file.to_str().unwrap(),
                "--key",
                &key,
            ],
        );
    }
}

fn figure3(dir: &Path) {
    let ex = examples();
    publish(dir, "DNS", &ex.join("DNS.cvl"), 3);
    publish(dir, "Firewall", &ex.join("Firewall.cvl"), 5);
    publish(dir, "OpenLDAP", &ex.join("OpenLDAP.cvl"), 1);
    publish(dir, "Groupware", &ex.join("Groupware.cvl"), 1);
    std::fs::copy(ex.join("AcmeGroupware.cvl"), dir.join("AcmeGroupware.cvl")).unwrap();
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

const ASSUME: [&str; 6] = [
    "--assume",
    "f.ethernet0.ip=10.0.1.1",
    "--assume",
    "d.ethernet0.ip=10.0.1.2",
    "--assume",
    "l.ethernet0.ip=10.0.1.3",
];

#[test]
fn an_assumption_about_no_parameter_is_an_error_with_a_suggestion() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = mirror(dir);
    figure3(dir);
    let out = cvl(
        dir,
        &[
            "eval",
            "--mirror",
            &m,
            "AcmeGroupware.cvl",
            "--object",
            "AcmeGroupware",
            "--assume",
            "f.ethernt0.ip=10.0.1.1",
        ],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("has no parameter `f.ethernt0.ip`; did you mean `f.ethernet0.ip`?"),
        "{said}"
    );
}

fn eval_acme(dir: &Path, assume: bool) -> Value {
    let m = mirror(dir);
    let mut args = vec![
        "eval",
        "--mirror",
        &m,
        "AcmeGroupware.cvl",
        "--object",
        "AcmeGroupware",
        "--format",
        "json",
    ];
    if assume {
        args.extend(ASSUME);
    }
    json(&ok(dir, &args))
}

#[test]
fn figure3_checks_clean_and_evaluates_to_the_papers_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = mirror(dir);
    figure3(dir);

    let out = ok(
        dir,
        &[
            "check",
            "--mirror",
            &m,
            "--deploy",
            "AcmeGroupware",
            "--format",
            "json",
            "AcmeGroupware.cvl",
        ],
    );
    assert_eq!(json(&out), serde_json::json!([]));

    let values = eval_acme(dir, true);
    for path in ["domain", "d.domain", "l.domain"] {
        assert_eq!(strings(&values[path]), ["acme.org"], "{path}");
    }
    assert_eq!(
        strings(&values["d.dnshosts"]),
        [
            "name=l&ip=10%2E0%2E1%2E3",
            "name=d&ip=10%2E0%2E1%2E2",
            "name=f&ip=10%2E0%2E1%2E1"
        ]
    );
    assert_eq!(
        strings(&values["f.services"]),
        [
            "port=389&ip=10%2E0%2E1%2E3",
            "port=636&ip=10%2E0%2E1%2E3",
            "port=53&ip=10%2E0%2E1%2E2"
        ]
    );
    assert_eq!(strings(&values["vanIF"]), ["f.ethernet1"]);
    assert_eq!(strings(&values["defaultroute"]), ["10.0.1.1"]);
    // The VAN's default route reaches its components' VAN interfaces...
    assert_eq!(strings(&values["d.ethernet0.defaultroute"]), ["10.0.1.1"]);
    // ...but not the exported one, which faces the outside.
    assert_eq!(
        strings(&values["f.ethernet1.defaultroute"]),
        Vec::<&str>::new()
    );
    assert_eq!(
        strings(&values["d.datadisks"]),
        ["device=ide0%3A1&size=100M"]
    );
    assert_eq!(strings(&values["l.name"]), ["l"]);
    assert_eq!(strings(&values["d.vm"]), ["dns.vmx"]);
    // The sensitive root DN password is the user agent's, never the file's.
    assert_eq!(
        values["l.rootdnpass"],
        serde_json::json!({"sensitive": "supplied at deploy time"})
    );

    // Without allocations, what depends on addresses is unknown (null).
    let symbolic = eval_acme(dir, false);
    assert!(symbolic["d.dnshosts"].is_null());
    assert!(symbolic["f.ethernet0.ip"].is_null());
    assert_eq!(strings(&symbolic["d.domain"]), ["acme.org"]);

    // Text output says where each value was assigned.
    let out = ok(
        dir,
        &[
            "eval",
            "--mirror",
            &m,
            "AcmeGroupware.cvl",
            "-o",
            "AcmeGroupware",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("d.domain ")).unwrap();
    assert!(
        line.contains("\"acme.org\"") && line.contains("repos/Groupware/versions/1/Groupware.cvl:"),
        "{line}"
    );
}

#[test]
fn the_lock_pins_versions_until_update_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = mirror(dir);
    figure3(dir);
    ok(dir, &["check", "--mirror", &m, "AcmeGroupware.cvl"]);
    let lock: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cvl.lock")).unwrap()).unwrap();
    let entries = lock["imports"].as_array().unwrap();
    let version_of = |cvl: &str| {
        entries
            .iter()
            .find(|e| e["cvl"] == cvl)
            .unwrap_or_else(|| panic!("{cvl} locked"))["version"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(entries.len(), 4);
    assert_eq!(version_of("DNS.cvl"), 3);
    assert_eq!(version_of("Firewall.cvl"), 5);
    assert_eq!(version_of("OpenLDAP.cvl"), 1);
    assert_eq!(version_of("Groupware.cvl"), 1);
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("repos/DNS/cvl-repository.json")).unwrap())
            .unwrap();
    let dns = entries.iter().find(|e| e["cvl"] == "DNS.cvl").unwrap();
    assert_eq!(dns["sha256"], index["versions"][2]["files"][0]["sha256"]);

    // OpenLDAP (unpinned) publishes version 2 with another port.
    let v2 = std::fs::read_to_string(examples().join("OpenLDAP.cvl"))
        .unwrap()
        .replace("\"389\"", "\"1389\"");
    std::fs::write(dir.join("OpenLDAP.cvl"), v2).unwrap();
    publish(dir, "OpenLDAP", &dir.join("OpenLDAP.cvl"), 1);
    assert_eq!(
        strings(&eval_acme(dir, false)["l.port"]),
        ["389"],
        "the lock keeps version 1"
    );
    // --locked passes while nothing needs to change, and says what it kept.
    let out = ok(
        dir,
        &["check", "--locked", "--mirror", &m, "AcmeGroupware.cvl"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let notes: Vec<&str> = stderr.lines().filter(|l| l.starts_with("note:")).collect();
    assert_eq!(
        notes,
        [
            "note: cvl.lock keeps http://virtualappliance.org/OpenLDAP (OpenLDAP.cvl) on \
             version 1; version 2 is published: run `cvl update-lock` to take it"
        ],
        "{stderr}"
    );
    ok(dir, &["update-lock", "--mirror", &m, "AcmeGroupware.cvl"]);
    assert_eq!(
        strings(&eval_acme(dir, false)["l.port"]),
        ["1389"],
        "update-lock moves to version 2"
    );
    let out = ok(dir, &["check", "--mirror", &m, "AcmeGroupware.cvl"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("note:"),
        "nothing newer once updated"
    );

    // A repository gone (down, or refused): update-lock fails and leaves
    // every version the lock pinned, the others' too.
    let before = std::fs::read(dir.join("cvl.lock")).unwrap();
    std::fs::rename(dir.join("repos/DNS"), dir.join("repos/DNS.away")).unwrap();
    let out = cvl(dir, &["update-lock", "--mirror", &m, "AcmeGroupware.cvl"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was left as it was"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(dir.join("cvl.lock")).unwrap(), before);
    std::fs::rename(dir.join("repos/DNS.away"), dir.join("repos/DNS")).unwrap();
    ok(
        dir,
        &["check", "--locked", "--mirror", &m, "AcmeGroupware.cvl"],
    );
}

#[test]
fn a_tampered_version_is_refused_by_every_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = mirror(dir);
    figure3(dir);
    ok(dir, &["check", "--mirror", &m, "AcmeGroupware.cvl"]);
    ok(dir, &["repo", "verify", "repos/DNS"]);
    let published = dir.join("repos/DNS/versions/3/DNS.cvl");
    let text = std::fs::read_to_string(&published)
        .unwrap()
        .replace("\"53\"", "\"5353\"");
    std::fs::write(&published, text).unwrap();

    let out = cvl(
        dir,
        &[
            "check",
            "--mirror",
            &m,
            "--format",
            "json",
            "AcmeGroupware.cvl",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let diagnostics = json(&out);
    let bad = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "bad-import")
        .expect("bad-import");
    assert!(
        bad["message"].as_str().unwrap().contains("tampered"),
        "{bad:#}"
    );

    let out = cvl(dir, &["repo", "verify", "repos/DNS"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("versions/3/DNS.cvl"));
}

#[test]
fn a_missing_pinned_version_is_a_bad_import_naming_the_latest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = mirror(dir);
    let ex = examples();
    publish(dir, "DNS", &ex.join("DNS.cvl"), 2);
    publish(dir, "Firewall", &ex.join("Firewall.cvl"), 5);
    publish(dir, "OpenLDAP", &ex.join("OpenLDAP.cvl"), 1);
    std::fs::copy(ex.join("Groupware.cvl"), dir.join("Groupware.cvl")).unwrap();
    let out = cvl(
        dir,
        &["check", "--mirror", &m, "--format", "json", "Groupware.cvl"],
    );
    assert_eq!(out.status.code(), Some(1));
    let diagnostics = json(&out);
    let bad = &diagnostics.as_array().unwrap()[0];
    assert_eq!(bad["code"], "bad-import");
    assert_eq!(bad["line"], 4);
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("has no version 3 (its latest is 2)"),
        "{bad:#}"
    );
    // A publish of an appliance whose imports fail is refused.
    ok(dir, &["repo", "create", "repos/Groupware"]);
    let out = cvl(
        dir,
        &[
            "publish",
            "--mirror",
            &m,
            "repos/Groupware",
            "Groupware.cvl",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.join("repos/Groupware/versions/1").exists());
}

fn suite(dir: &Path) {
    let ex = examples().join("suite");
    for name in [
        "Firewall",
        "DHCP",
        "DNS",
        "LDAP",
        "Mail",
        "Plone",
        "GroupwareSuite",
    ] {
        publish(dir, name, &ex.join(format!("{name}.cvl")), 1);
    }
}

#[test]
fn the_suite_needs_fourteen_parameters_and_reports_each_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = mirror(dir);
    suite(dir);
    std::fs::copy(
        examples().join("suite/AcmeSuite.cvl"),
        dir.join("AcmeSuite.cvl"),
    )
    .unwrap();
    let out = ok(
        dir,
        &[
            "check",
            "--mirror",
            &m,
            "--deploy",
            "AcmeSuite",
            "--format",
            "json",
            "AcmeSuite.cvl",
        ],
    );
    assert_eq!(
        json(&out),
        serde_json::json!([]),
        "the four sensitive ones come from the user agent"
    );

    // A user who sets nothing gets one error per parameter to set: the ten
    // non-sensitive of Figure 5's fourteen, each at GroupwareSuite's
    // declaration, with the components' copies that need it as a note.
    std::fs::write(
        dir.join("Bare.cvl"),
        "import { url => \"http://virtualappliance.org/GroupwareSuite\", cvl => \"GroupwareSuite.cvl\" } GroupwareSuite;\nBare extends GroupwareSuite {}\n",
    )
    .unwrap();
    let out = cvl(
        dir,
        &[
            "check", "--mirror", &m, "--deploy", "Bare", "--format", "json", "Bare.cvl",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let diagnostics = json(&out);
    let missing: Vec<&Value> = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "missing-required")
        .collect();
    assert_eq!(
        missing.len(),
        diagnostics.as_array().unwrap().len(),
        "{diagnostics:#}"
    );
    let mut names: Vec<String> = missing
        .iter()
        .map(|d| {
            let m = d["message"].as_str().unwrap();
            m.split('`').nth(1).unwrap().to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "certemail",
            "city",
            "country",
            "defmailhost",
            "domain",
            "forwarders",
            "hostname",
            "org",
            "ou",
            "state"
        ]
    );
    for d in &missing {
        assert!(
            d["file"].as_str().unwrap().ends_with("GroupwareSuite.cvl"),
            "{d:#}"
        );
    }
    let domain = missing
        .iter()
        .find(|d| d["message"].as_str().unwrap().contains("`domain`"))
        .unwrap();
    let notes = domain["notes"].to_string();
    for copy in ["h.domain", "d.domain", "l.domain"] {
        assert!(notes.contains(copy), "{notes}");
    }

    // Evaluated: the user's values reach every component that needs them.
    let values = json(&ok(
        dir,
        &[
            "eval",
            "--mirror",
            &m,
            "AcmeSuite.cvl",
            "-o",
            "AcmeSuite",
            "--format",
            "json",
        ],
    ));
    for path in ["h.domain", "d.domain", "l.domain"] {
        assert_eq!(strings(&values[path]), ["acme.org"]);
    }
    assert_eq!(strings(&values["d.forwarders"]), ["192.0.2.53"]);
    assert_eq!(strings(&values["m.certemail"]), ["admin@acme.org"]);
    assert!(
        values["h.hosts"].is_null(),
        "MACs and IPs are allocated at deploy time"
    );
    let declared: Vec<&String> = values
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.contains('.'))
        .filter(|k| {
            !["requires", "provides", "vanIF", "name", "defaultroute"].contains(&k.as_str())
        })
        .collect();
    assert_eq!(declared.len(), 14, "{declared:?}");
}

#[test]
fn a_requirement_nobody_provides_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = mirror(dir);
    suite(dir);
    // DNS and LDAP both require DHCP (Figure 4), and this VAN has no DHCP.
    std::fs::write(
        dir.join("Two.cvl"),
        "import { url => \"http://virtualappliance.org/DNS\", cvl => \"DNS.cvl\" } DNS;\n\
         import { url => \"http://virtualappliance.org/LDAP\", cvl => \"LDAP.cvl\" } LDAP;\n\
         Two extends VANAppliance {\n  DNS d;\n  LDAP l;\n  vanIF = \"d.ethernet0\";\n}\n",
    )
    .unwrap();
    let out = cvl(
        dir,
        &[
            "check", "--mirror", &m, "--deploy", "Two", "--format", "json", "Two.cvl",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let diagnostics = json(&out);
    let unmet: Vec<String> = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "requires-unsatisfied")
        .map(|d| d["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(unmet.len(), 2, "{diagnostics:#}");
    assert!(
        unmet[0].starts_with("`d` (DNS) requires \"DHCP\""),
        "{unmet:?}"
    );
    assert!(
        unmet[1].starts_with("`l` (LDAP) requires \"DHCP\""),
        "{unmet:?}"
    );
}

#[test]
fn the_blacklist_bars_versions_and_names_the_newest_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = mirror(dir);
    figure3(dir);
    ok(dir, &["check", "--mirror", &m, "AcmeGroupware.cvl"]);
    // OpenLDAP is unpinned; the lock holds version 1. The administrator bars it.
    ok(
        dir,
        &[
            "blacklist",
            "add",
            "http://virtualappliance.org/OpenLDAP",
            "1",
            "--reason",
            "CVE-2003-0001",
        ],
    );
    let listed = String::from_utf8_lossy(&ok(dir, &["blacklist", "list"]).stdout).to_string();
    assert!(
        listed.contains("http://virtualappliance.org/OpenLDAP  versions 1"),
        "{listed}"
    );
    let check = |dir: &Path| {
        cvl(
            dir,
            &[
                "check",
                "--mirror",
                &m,
                "--format",
                "json",
                "AcmeGroupware.cvl",
            ],
        )
    };
    let out = check(dir);
    assert_eq!(out.status.code(), Some(1));
    let d = json(&out)[0].clone();
    assert_eq!(d["code"], "blacklisted-version");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("CVE-2003-0001") && message.contains("no version of it is allowed"),
        "{message}"
    );

    // A fixed version 2 is published; the lock still pins 1 until updated.
    publish(dir, "OpenLDAP", &examples().join("OpenLDAP.cvl"), 1);
    let d = json(&check(dir))[0].clone();
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("cvl.lock pins it; the newest allowed version is 2"),
        "{d:#}"
    );
    ok(dir, &["update-lock", "--mirror", &m, "AcmeGroupware.cvl"]);
    assert_eq!(check(dir).status.code(), Some(0));

    // Lifting the bar.
    ok(
        dir,
        &["blacklist", "rm", "http://virtualappliance.org/OpenLDAP"],
    );
    assert!(String::from_utf8_lossy(&ok(dir, &["blacklist", "list"]).stdout).contains("empty"));
    assert_eq!(
        cvl(
            dir,
            &["blacklist", "rm", "http://virtualappliance.org/OpenLDAP"]
        )
        .status
        .code(),
        Some(2)
    );
}
