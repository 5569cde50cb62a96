//! Data-driven tests: every `.cvl` under `test_data/parser/{ok,err}` and every
//! example of the project is parsed, its tree and errors snapshotted beside it
//! (insta; `INSTA_UPDATE=always` or `cargo insta review` to accept changes),
//! and, when it parses cleanly, formatted: idempotent, meaning kept.

use std::path::{Path, PathBuf};

use cvl_syntax::format::{format_text, FormatOptions};
use cvl_syntax::{parse, SyntaxKind};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            // A repository's published versions are copies of sources
            // that are tested where they are written (as `cvl check` skips them).
            if path.is_dir() && !path.join("cvl-repository.json").exists() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "cvl") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no .cvl files under {}", dir.display());
    files
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Non-trivia tokens: what the formatter must keep, in order.
fn meaning(text: &str) -> Vec<(SyntaxKind, String)> {
    parse(text)
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .map(|t| (t.kind(), t.text().to_string()))
        .collect()
}

fn comments(text: &str) -> Vec<String> {
    parse(text)
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind().is_comment())
        .map(|t| t.text().trim_end().to_string())
        .collect()
}

/// Snapshots are named for the input's path below `base`, `/` as `__`.
fn check_file(path: &Path, base: &Path, snapshot_dir: &Path, expect_errors: bool) {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path
        .strip_prefix(base)
        .unwrap()
        .with_extension("")
        .to_string_lossy()
        .replace(['/', '\\'], "__");
    let parsed = parse(&text);
    assert_eq!(
        parsed.syntax().to_string(),
        text,
        "{}: not lossless",
        path.display()
    );
    assert_eq!(
        !parsed.errors().is_empty(),
        expect_errors,
        "{}: errors: {:?}",
        path.display(),
        parsed.errors()
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(snapshot_dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_input_file(path);
    settings.set_omit_expression(true);
    settings.bind(|| {
        insta::assert_snapshot!(name.clone(), parsed.debug_dump());
        if expect_errors {
            return;
        }
        let formatted = format_text(&text, FormatOptions::default()).unwrap();
        let again = format_text(&formatted, FormatOptions::default()).unwrap();
        assert_eq!(
            formatted,
            again,
            "{}: formatting is not idempotent",
            path.display()
        );
        assert_eq!(
            meaning(&formatted),
            meaning(&text),
            "{}: meaning changed",
            path.display()
        );
        assert_eq!(
            comments(&formatted),
            comments(&text),
            "{}: comments changed",
            path.display()
        );
        insta::assert_snapshot!(format!("{name}.formatted"), formatted);
    });
}

#[test]
fn parser_ok_inputs() {
    let dir = crate_dir().join("test_data/parser/ok");
    for path in inputs(&dir) {
        check_file(&path, &dir, &dir, false);
    }
}

#[test]
fn parser_error_inputs() {
    let dir = crate_dir().join("test_data/parser/err");
    for path in inputs(&dir) {
        check_file(&path, &dir, &dir, true);
    }
}

#[test]
fn project_examples() {
    let examples = crate_dir().join("../examples");
    let snapshots = crate_dir().join("test_data/parser/examples");
    for path in inputs(&examples) {
        check_file(&path, &examples, &snapshots, false);
    }
}
