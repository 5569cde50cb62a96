//! The `cvl` binary as a user and CI run it: exit codes, output formats, and
//! that files are only ever changed whole.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn cvl(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cvl"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("runs cvl")
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The examples without imports check clean on their own (the ones that
/// import are checked through repositories in `groupware.rs`).
#[test]
fn check_examples_without_imports_is_clean() {
    let files = [
        "groupware/DNS.cvl",
        "groupware/Firewall.cvl",
        "groupware/OpenLDAP.cvl",
        "groupware/suite/DHCP.cvl",
        "groupware/suite/DNS.cvl",
        "groupware/suite/Firewall.cvl",
        "groupware/suite/LDAP.cvl",
        "groupware/suite/Mail.cvl",
        "groupware/suite/Plone.cvl",
    ];
    let mut args = vec!["check", "--format", "json"];
    args.extend(files);
    let out = cvl(&args, &examples());
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Only hints: what users of these appliances must set.
    for d in json.as_array().unwrap() {
        assert_eq!(d["severity"], "hint", "{d:#}");
        assert_eq!(d["code"], "missing-required", "{d:#}");
    }
}

#[test]
fn fmt_check_examples_is_clean() {
    let out = cvl(&["fmt", "--check", "."], &examples());
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn check_reports_every_syntax_error_as_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cvl"),
        "A extends VMAppliance {\n  vm = \"a.vmx\"\n  datadisks = { device \"x\" };\n}\n",
    )
    .unwrap();
    let out = cvl(&["check", "--format", "json", "a.cvl"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items: Vec<&serde_json::Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] != "invalid-vm")
        .collect();
    assert_eq!(items.len(), 2, "{json:#}");
    assert_eq!(items[0]["code"], "syntax-error");
    assert_eq!(items[0]["severity"], "error");
    assert_eq!(items[0]["file"], "a.cvl");
    assert_eq!(items[0]["line"], 2);
    assert_eq!(items[0]["column"], 15);
    assert_eq!(items[0]["end_line"], 2);
    assert_eq!(items[1]["line"], 3);
    assert!(items[1]["message"].as_str().unwrap().contains("`=>`"));
}

#[test]
fn check_sarif_is_sarif() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.cvl"), "A extends VMApplianse { x = ; }").unwrap();
    let out = cvl(&["check", "--format", "sarif", "a.cvl"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let unresolved = &results[0];
    assert_eq!(unresolved["ruleId"], "unresolved-name");
    assert!(unresolved["message"]["text"]
        .as_str()
        .unwrap()
        .contains("did you mean `VMAppliance`"));
    let result = &results[1];
    assert_eq!(result["ruleId"], "syntax-error");
    assert_eq!(result["level"], "error");
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"], 1);
    assert_eq!(region["startColumn"], 28);
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 21);
}

#[test]
fn human_output_shows_the_source_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cvl"),
        "A extends B {\n  OpenLDAP 1;\n}\n",
    )
    .unwrap();
    let out = cvl(&["check", "a.cvl"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("error[syntax-error]"), "{text}");
    assert!(text.contains("a.cvl:2:12"), "{text}");
    assert!(text.contains("OpenLDAP 1;"), "{text}");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        cvl(&["check", "missing.cvl"], dir.path()).status.code(),
        Some(2)
    );
    assert_eq!(
        cvl(&["check", "--format", "xml"], dir.path()).status.code(),
        Some(2)
    );
    assert_eq!(cvl(&["frobnicate"], dir.path()).status.code(), Some(2));
    // Options only where they mean something: `--locked` where a lock is used.
    for args in [
        &["update-lock", "--locked", "x.cvl"][..],
        &["repo", "log", "--locked", "repos/x"],
        &["repo", "fetch", "--locked", "repos/x"],
    ] {
        let out = cvl(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--locked'"),
            "{args:?}"
        );
    }
    assert!(stdout(&cvl(&["check", "--help"], dir.path())).contains("--locked"));
}

#[test]
fn invalid_utf8_is_named_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cvl"),
        b"A extends B {\n  x = \"\xff\";\n}\n",
    )
    .unwrap();
    let out = cvl(&["check", "--format", "json", "a.cvl"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["line"], 2);
    assert_eq!(json[0]["column"], 8);
    assert!(json[0]["message"]
        .as_str()
        .unwrap()
        .contains("invalid UTF-8"));
    // fmt refuses it and leaves the bytes alone.
    let out = cvl(&["fmt", "a.cvl"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read(dir.path().join("a.cvl")).unwrap(),
        b"A extends B {\n  x = \"\xff\";\n}\n"
    );
}

#[test]
fn fmt_rewrites_in_place_and_check_shows_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.cvl");
    std::fs::write(&file, "A extends VMAppliance{vm=\"a.vmx\";}").unwrap();
    let out = cvl(&["fmt", "--check", "a.cvl"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("+  vm = \"a.vmx\";"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "A extends VMAppliance{vm=\"a.vmx\";}"
    );
    let out = cvl(&["fmt", "a.cvl"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "A extends VMAppliance {\n  vm = \"a.vmx\";\n}\n"
    );
    assert_eq!(
        cvl(&["fmt", "--check", "a.cvl"], dir.path()).status.code(),
        Some(0)
    );
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn fmt_through_a_symbolic_link_formats_its_target_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    let target = dir.path().join("real/a.cvl");
    std::fs::write(&target, "A extends VMAppliance{vm=\"a.vmx\";}").unwrap();
    let link = dir.path().join("link.cvl");
    std::os::unix::fs::symlink("real/a.cvl", &link).unwrap();
    let out = cvl(&["fmt", "link.cvl"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is still a link"
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "A extends VMAppliance {\n  vm = \"a.vmx\";\n}\n"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path().join("real"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
}

#[test]
fn fmt_refuses_a_file_with_syntax_errors_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.cvl");
    let text = "A extends VMAppliance {  vm = \"a.vmx\"\n}";
    std::fs::write(&file, text).unwrap();
    let out = cvl(&["fmt", "a.cvl"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("a.cvl:1:38"), "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

#[test]
fn fmt_stdin_to_stdout() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cvl"))
        .args(["fmt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"CVL=\"0.8\";")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "CVL = \"0.8\";\n");
}

#[test]
fn parse_prints_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.cvl"), "CVL = \"0.8\";").unwrap();
    let out = cvl(&["parse", "a.cvl"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.starts_with("ROOT@0..12\n  ASSIGN@0..12"), "{text}");
}

/// `cvl eval` tells a sensitive parameter the user supplies at deploy time
/// from a redacted one and from an unset plain one, in text and JSON.
#[test]
fn eval_tells_sensitive_inputs_from_redacted_and_unset_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("S.cvl"),
        "S extends VMAppliance {\n  var \"sensitive\" pw, derived;\n  var plain;\n  \
         vm = \"s.vmx\";\n  derived = pw;\n}\n",
    )
    .unwrap();
    let text = stdout(&cvl(&["eval", "S.cvl", "-o", "S"], dir.path()));
    assert!(
        text.contains("pw                     = <sensitive: supplied at deploy time>"),
        "{text}"
    );
    assert!(text.contains("plain                  = (unset)"), "{text}");
    let out = cvl(
        &["eval", "S.cvl", "-o", "S", "--format", "json"],
        dir.path(),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["pw"],
        serde_json::json!({"sensitive": "supplied at deploy time"})
    );
    assert_eq!(json["plain"], serde_json::json!([]));
    // With a value (as the utility evaluates it), it is redacted.
    let out = cvl(
        &[
            "eval",
            "S.cvl",
            "-o",
            "S",
            "--format",
            "json",
            "--assume",
            "pw=hunter2",
        ],
        dir.path(),
    );
    let said = stdout(&out);
    assert!(!said.contains("hunter2"), "{said}");
    let json: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(
        json["derived"],
        serde_json::json!({"sensitive": "redacted"})
    );
    let help = stdout(&cvl(&["eval", "--help"], dir.path()));
    assert!(
        help.contains("<sensitive: supplied at deploy time>"),
        "{help}"
    );
}

/// `--format json` everywhere (no `--json`), and columns that line up.
#[test]
fn blacklist_lists_in_columns_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cvl"))
            .args(args)
            .env("CVL_HOME", dir.path().join("home"))
            .output()
            .unwrap()
    };
    assert!(run(&["blacklist", "add", "http://a.example/DNS", "1-2"])
        .status
        .success());
    assert!(run(&[
        "blacklist",
        "add",
        "http://appliances.example/Firewall",
        "3",
        "--reason",
        "CVE"
    ])
    .status
    .success());
    let listed = stdout(&run(&["blacklist", "list"]));
    let at: Vec<usize> = listed
        .lines()
        .map(|l| l.find("versions").unwrap())
        .collect();
    assert!(at.len() == 2 && at[0] == at[1], "{listed}");
    let at: Vec<usize> = listed.lines().map(|l| l.find("added").unwrap()).collect();
    assert!(at[0] == at[1], "{listed}");
    let json: serde_json::Value =
        serde_json::from_slice(&run(&["blacklist", "list", "--format", "json"]).stdout).unwrap();
    assert_eq!(json["entries"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(run(&["blacklist", "list", "--json"]).status.code(), Some(2));
}
