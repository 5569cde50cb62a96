//! One directory of small cases per diagnostic code (`tests/diagnostics/CODE`):
//! each `.cvl` file (or `CASE/main.cvl` with the files it imports) is checked
//! by the real `cvl check`, and its rendered output is snapshotted beside it.
//! A first line `// cvl check --deploy NAME` checks NAME as deployed.
//! A case folder may hold a `home/` (the utility home: a blacklist) and
//! repositories its imports use. A case folder with a `test.params` (and
//! the appliance beside it) checks that test parameters file instead. Every case must report its directory's code:
//! the test fails otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cases(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for code_dir in std::fs::read_dir(root).unwrap() {
        let code_dir = code_dir.unwrap().path();
        let code = code_dir.file_name().unwrap().to_string_lossy().to_string();
        for entry in std::fs::read_dir(&code_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && path.join("test.params").exists() {
                out.push((code.clone(), path.join("test.params")));
            } else if path.is_dir() {
                out.push((code.clone(), path.join("main.cvl")));
            } else if path.extension().is_some_and(|e| e == "cvl") {
                out.push((code.clone(), path));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_code_has_cases_and_each_case_reports_its_code() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let cases = cases(&root);
    let codes: std::collections::BTreeSet<&str> = cases.iter().map(|(c, _)| c.as_str()).collect();
    for code in cvl_codes() {
        assert!(
            codes.contains(code),
            "no case for `{code}` under {}",
            root.display()
        );
    }
    for (code, path) in &cases {
        let text = std::fs::read_to_string(path).unwrap();
        let mut args = vec![
            "--color".to_string(),
            "never".to_string(),
            "check".to_string(),
        ];
        if let Some(rest) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// cvl check "))
        {
            args.extend(rest.split_whitespace().map(str::to_string));
        }
        let dir = path.parent().unwrap();
        args.push(path.file_name().unwrap().to_string_lossy().to_string());
        let out = Command::new(env!("CARGO_BIN_EXE_cvl"))
            .args(&args)
            .current_dir(dir)
            .env_remove("CVL_MIRRORS")
            .env("CVL_HOME", dir.join("home"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("[{code}]")),
            "{}: expected a `{code}` diagnostic, got:\n{stdout}",
            path.display()
        );
        let name = path
            .strip_prefix(&root)
            .unwrap()
            .with_extension("")
            .to_string_lossy()
            .replace('/', "__");
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(path.parent().unwrap());
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_input_file(path);
        settings.bind(|| {
            insta::assert_snapshot!(
                name,
                format!(
                    "$ cvl {}\nexit code {}\n{stdout}",
                    args[2..].join(" "),
                    out.status.code().unwrap_or(-1)
                )
            );
        });
        assert!(
            !dir.join("home/cache").exists(),
            "a local check touched the cache"
        );
    }
}

fn cvl_codes() -> Vec<&'static str> {
    vec![
        "syntax-error",
        "unresolved-name",
        "missing-required",
        "sensitive-literal",
        "sensitive-flow",
        "duplicate-declaration",
        "inheritance-cycle",
        "reference-cycle",
        "invalid-component-kind",
        "invalid-extends",
        "bad-vanif",
        "bad-import",
        "unsupported-version",
        "requires-unsatisfied",
        "dependency-cycle",
        "blacklisted-version",
        "overridden-assignment",
        "unknown-attribute",
        "map-value-not-scalar",
        "invalid-vm",
    ]
}
