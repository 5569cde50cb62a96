//! The newcomer's path: the examples work where they are.
//! `examples/cvl.toml` maps the paper's `http://virtualappliance.org/` to
//! the repositories published beside it, so `cvl check`, `cvl fmt --check`
//! and `cvl eval` need no flags or environment and change nothing; the
//! repositories hold exactly the example files (scripts/publish-examples.sh
//! rebuilds them). And a broken `cvl.toml` is a clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .canonicalize()
        .unwrap()
}

fn cvl(home: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cvl"))
        .args(args)
        .current_dir(dir)
        .env_remove("CVL_MIRRORS")
        .env("CVL_HOME", home)
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_examples_check_and_evaluate_in_place_with_no_flags() {
    let home = tempfile::tempdir().unwrap();
    let ex = examples();
    let locks = ["groupware/cvl.lock", "groupware/suite/cvl.lock"];
    let before: Vec<Vec<u8>> = locks
        .iter()
        .map(|l| std::fs::read(ex.join(l)).unwrap())
        .collect();

    let out = cvl(home.path(), &ex, &["check", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(!said(&out).contains("error["), "{}", said(&out));
    // The examples' repositories are unsigned on purpose (a signature would
    // expire, or a key would be committed): each import says so, nothing
    // else warns.
    let text = said(&out);
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning[")).collect();
    assert!(!warnings.is_empty(), "{}", said(&out));
    assert!(
        warnings
            .iter()
            .all(|w| w.starts_with("warning[unsigned-repository]")),
        "{}",
        said(&out)
    );
    assert!(said(&out).contains("hints shown above)"), "{}", said(&out));
    let out = cvl(home.path(), &ex, &["fmt", "--check", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let out = cvl(
        home.path(),
        &ex.join("groupware"),
        &[
            "eval",
            "AcmeGroupware.cvl",
            "-o",
            "AcmeGroupware",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let values: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(values["d.domain"], serde_json::json!(["acme.org"]));
    // From another folder, too: the settings are found from the file.
    let out = cvl(
        home.path(),
        home.path(),
        &[
            "eval",
            ex.join("groupware/suite/AcmeSuite.cvl").to_str().unwrap(),
            "-o",
            "AcmeSuite",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let after: Vec<Vec<u8>> = locks
        .iter()
        .map(|l| std::fs::read(ex.join(l)).unwrap())
        .collect();
    assert_eq!(before, after, "a cvl.lock of the examples changed");
}

#[test]
fn the_shipped_repositories_hold_the_example_files() {
    let home = tempfile::tempdir().unwrap();
    let ex = examples();
    // (repository, version, example file)
    let mut expected = vec![
        ("OpenLDAP", 1, "groupware/OpenLDAP.cvl"),
        ("Groupware", 1, "groupware/Groupware.cvl"),
        ("DNS", 4, "groupware/suite/DNS.cvl"),
        ("Firewall", 6, "groupware/suite/Firewall.cvl"),
    ];
    expected.extend((1..=3).map(|v| ("DNS", v, "groupware/DNS.cvl")));
    expected.extend((1..=5).map(|v| ("Firewall", v, "groupware/Firewall.cvl")));
    for name in ["DHCP", "LDAP", "Mail", "Plone", "GroupwareSuite"] {
        expected.push((
            name,
            1,
            Box::leak(format!("groupware/suite/{name}.cvl").into_boxed_str()),
        ));
    }
    for (repo, version, file) in expected {
        let cvl_name = Path::new(file).file_name().unwrap();
        let published = ex
            .join(format!("repos/{repo}/versions/{version}"))
            .join(cvl_name);
        assert_eq!(
            std::fs::read(&published).unwrap_or_default(),
            std::fs::read(ex.join(file)).unwrap(),
            "{} differs from {file}: run scripts/publish-examples.sh",
            published.display()
        );
    }
    for entry in std::fs::read_dir(ex.join("repos")).unwrap().flatten() {
        let out = cvl(
            home.path(),
            &ex,
            &["repo", "verify", entry.path().to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    }
}

#[test]
fn a_broken_workspace_settings_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/A.cvl"), "A extends VANAppliance {\n}\n").unwrap();
    for (text, expect) in [
        ("[mirrors\n", "cvl.toml"),
        ("[mirror]\n\"a\" = \"b\"\n", "unknown field `mirror`"),
        ("[mirrors]\n\"http://x/\" = 3\n", "must be a string"),
    ] {
        std::fs::write(dir.join("cvl.toml"), text).unwrap();
        let out = cvl(&dir.join("home"), &dir.join("sub"), &["check", "A.cvl"]);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", said(&out));
        assert!(said(&out).contains(expect), "{text}: {}", said(&out));
        assert!(
            said(&out).contains(&dir.join("cvl.toml").display().to_string()),
            "{}",
            said(&out)
        );
    }
}

/// An import from a server that cannot be reached is one error, which says
/// how to mirror it; what only follows from it (a vanIF naming the missing
/// component's interface) is not reported again.
#[test]
fn an_unreachable_import_is_one_error_with_the_way_to_mirror_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("Net.cvl"),
        "import { url => \"http://127.0.0.1:9/Firewall\", cvl => \"Firewall.cvl\" } Firewall;\n\
         Net extends VANAppliance {\n  Firewall f;\n  vanIF = \"f.ethernet1\";\n}\n",
    )
    .unwrap();
    let out = cvl(
        &tmp.path().join("home"),
        tmp.path(),
        &["check", "--format", "json", "--timeout", "5", "Net.cvl"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let diagnostics: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<&serde_json::Value> = diagnostics
        .iter()
        .filter(|d| d["severity"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["code"], "bad-import");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.contains("--mirror http://127.0.0.1:9/=file:///path/to/repos/")
            && message.contains("cvl.toml"),
        "{message}"
    );
}
