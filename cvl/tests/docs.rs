//! The docs are true: every `cvl` command and option that the README,
//! ARCHITECTURE.md, docs/, editors/, appliances/ and packaging/ name in code
//! exists in the command tree (read from the manual pages `cvl man` makes
//! from it), and every repository path they name, in backticks or as a
//! relative link, exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every command's page name (`cvl-host-add`) and its roff text.
fn command_tree() -> BTreeMap<String, String> {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cvl"))
        .args(["man", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "cvl man failed");
    std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".1")
                .to_string();
            (name, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect()
}

/// The Markdown files that document the project.
fn documents() -> Vec<PathBuf> {
    let root = workspace();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for dir in ["docs", "editors", "appliances", "packaging", "examples"] {
        walk(&root.join(dir), &mut files);
    }
    files.retain(|f| f.extension().is_some_and(|e| e == "md"));
    files
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if name == "node_modules" || name == "target" {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The code of a Markdown file: fenced blocks whole, and inline code spans,
/// each with its line number.
fn code_of(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            out.push((i + 1, line.to_string()));
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find('`') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('`') else { break };
            out.push((i + 1, after[..end].to_string()));
            rest = &after[end + 1..];
        }
    }
    out
}

/// What is wrong with the `cvl ...` invocations in `code`: unknown commands
/// and options.
fn check_invocations(code: &str, tree: &mut BTreeMap<String, String>, problems: &mut Vec<String>) {
    let words: Vec<&str> = code
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '|' | '&' | ';' | '`'))
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        // `cvl` where a shell runs it: first, or after a separator or a
        // prefix (`sudo cvl`, `&& cvl`); not `-p cvl` or a file named cvl in
        // a listing (`cvl    the CVL file`).
        let runs = i == 0
            || matches!(
                words[i - 1],
                "$" | "#" | "&&" | "||" | "sudo" | "exec" | "then" | "do" | "time" | "!"
            );
        if *w != "cvl" || !runs || code.contains("cvl  ") {
            continue;
        }
        let mut current = "cvl".to_string();
        let mut path = vec!["cvl"];
        let mut positional = 0;
        for token in &words[i + 1..] {
            if *token == "--" || token.starts_with('>') || token.starts_with('<') {
                break;
            }
            if let Some(option) = token.strip_prefix("--") {
                let option = option.split('=').next().unwrap_or_default();
                if option.is_empty() || !option.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                {
                    continue;
                }
                let known = tree.get(&current).is_some_and(|page| defines(page, option))
                    || global(tree, option);
                if !known {
                    problems.push(format!("`{current}` has no option --{option}"));
                }
                continue;
            }
            if token.starts_with('-') {
                continue;
            }
            let has_children = tree.keys().any(|k| k.starts_with(&format!("{current}-")));
            let child = format!("{current}-{token}");
            if positional == 0 && (tree.contains_key(&child) || hidden(&path, token, tree)) {
                current = child;
                path.push(token);
                continue;
            }
            let word = token.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            if has_children && positional == 0 && word && *token != "help" {
                problems.push(format!("`{current}` has no subcommand `{token}`"));
            }
            positional += 1;
        }
    }
}

/// Whether a command's page defines `--option` (in its synopsis or its
/// options, where the manual sets it in bold; not merely names it in a
/// sentence). A hidden command's page is its `--help` text.
fn defines(page: &str, option: &str) -> bool {
    let escaped = option.replace('-', "\\-");
    page.contains(&format!("\\fB\\-\\-{escaped}\\fR"))
        || (!page.starts_with('.')
            && page.lines().any(|l| {
                l.trim_start()
                    .split([' ', ','])
                    .any(|w| w == format!("\\-\\-{escaped}"))
            }))
}

/// Whether `--option` is one of the options every command takes (those
/// in `cvl`'s own synopsis).
fn global(tree: &BTreeMap<String, String>, option: &str) -> bool {
    let synopsis = tree["cvl"]
        .split(".SH SYNOPSIS")
        .nth(1)
        .and_then(|rest| rest.split(".SH").next())
        .unwrap_or_default();
    defines(synopsis, option)
}

/// A command the manual leaves out (`cvl host serve`, which the utility
/// runs on hosts): known when its `--help` answers, its options then read
/// from that text (written as the manual escapes them).
fn hidden(path: &[&str], token: &str, tree: &mut BTreeMap<String, String>) -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_cvl"))
        .args(&path[1..])
        .args([token, "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let usage = format!("Usage: {} {token} ", path.join(" "));
    if !out.status.success() || !help.contains(&usage) {
        return false;
    }
    let page = format!("{}-{token}", path.join("-"));
    tree.insert(page, help.replace('-', "\\-"));
    true
}

/// Paths the docs name as the reader's own (an appliance they build), not
/// the repository's.
const THE_READERS_OWN: [&str; 1] = ["appliances/MyApp"];

/// Repository paths named in code spans: each must exist, from the root or
/// from the document's folder.
fn check_paths(code: &str, root: &Path, here: &Path, problems: &mut Vec<String>) {
    let tops: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "target")
        .collect();
    for token in code
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | '`' | '"' | '\'' | ':'))
    {
        let token = token.trim_end_matches(['.', ';']);
        let Some((first, _)) = token.split_once('/') else {
            continue;
        };
        // A placeholder in capitals (`appliances/NAME/`) names any.
        let placeholder = token
            .split('/')
            .any(|part| part.len() > 1 && part.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        if !tops.iter().any(|t| t == first)
            || placeholder
            || THE_READERS_OWN.iter().any(|own| token.starts_with(own))
            || token.contains(['*', '<', '>', '$', '{', '['])
            || token.contains("/N/")
            || token.contains("...")
        {
            continue;
        }
        if !root.join(token).exists() && !here.join(token).exists() {
            problems.push(format!("`{token}` does not exist"));
        }
    }
}

/// Relative Markdown links: each target must exist.
fn check_links(text: &str, doc: &Path, problems: &mut Vec<String>) {
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split('#').next().unwrap_or_default();
            rest = &after[end..];
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !doc.parent().unwrap().join(target).exists() {
                problems.push(format!(
                    "line {}: the link to {target} leads nowhere",
                    i + 1
                ));
            }
        }
    }
}

#[test]
fn every_command_option_and_path_the_docs_name_exists() {
    let mut tree = command_tree();
    assert!(tree.contains_key("cvl-apply") && tree.contains_key("cvl-host-add"));
    let root = workspace().canonicalize().unwrap();
    let mut all = Vec::new();
    let docs = documents();
    assert!(docs.len() > 10, "too few documents found: {docs:?}");
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let name = doc.canonicalize().unwrap();
        let name = name.strip_prefix(&root).unwrap().display().to_string();
        let mut problems = Vec::new();
        for (line, code) in code_of(&text) {
            let mut here = Vec::new();
            check_invocations(&code, &mut tree, &mut here);
            check_paths(&code, &root, doc.parent().unwrap(), &mut here);
            problems.extend(here.into_iter().map(|p| format!("line {line}: {p}")));
        }
        check_links(&text, doc, &mut problems);
        all.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
    }
    all.dedup();
    assert!(
        all.is_empty(),
        "the docs name what does not exist:\n  {}",
        all.join("\n  ")
    );
}

/// The examples of a command's page (`Examples:` lines and `Example: ...`),
/// unescaped, with their line numbers; a line going on (` \\`) joined.
fn page_examples(page: &str) -> Vec<(usize, String)> {
    let text = page.replace("\\-", "-").replace("\\*(Aq", "'");
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut in_examples = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some((_, rest)) = out.last_mut().filter(|(_, l)| l.ends_with(" \\")) {
            rest.truncate(rest.len() - 1);
            rest.push_str(trimmed);
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("Example:") {
            out.push((i + 1, rest.trim().to_string()));
            in_examples = false;
        } else if trimmed.starts_with("Examples:") {
            in_examples = true;
        } else if in_examples && line.starts_with("  ") && !trimmed.starts_with('(') {
            // The comment after a run of spaces is not code.
            out.push((
                i + 1,
                trimmed.split("  ").next().unwrap_or_default().to_string(),
            ));
        } else if !line.starts_with("  ") {
            in_examples = false;
        }
    }
    out
}

/// Every example in every command's help (the manual pages are made from
/// the same text) names commands and options that exist, for the command
/// it runs.
#[test]
fn every_example_in_every_commands_help_exists() {
    let mut tree = command_tree();
    let pages: Vec<(String, String)> = tree.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut problems = Vec::new();
    let mut examples = 0;
    for (name, page) in &pages {
        for (line, code) in page_examples(page) {
            examples += 1;
            let mut here = Vec::new();
            check_invocations(&code, &mut tree, &mut here);
            problems.extend(
                here.into_iter()
                    .map(|p| format!("{name}.1 line {line}: {p}")),
            );
        }
    }
    assert!(examples > 20, "too few examples found: {examples}");
    assert!(
        problems.is_empty(),
        "examples in the help name what does not exist:\n  {}",
        problems.join("\n  ")
    );
}

/// The checker itself finds what is wrong.
#[test]
fn the_checker_finds_unknown_commands_options_and_paths() {
    let mut tree = command_tree();
    let mut problems = Vec::new();
    check_invocations("cvl aply FILE", &mut tree, &mut problems);
    check_invocations("cvl apply --auto-aprove FILE", &mut tree, &mut problems);
    check_invocations("cvl host ad h1", &mut tree, &mut problems);
    check_invocations(
        "cvl apply --target a --auto-approve X.cvl",
        &mut tree,
        &mut problems,
    );
    check_invocations("cvl host add h1 --memory 4096", &mut tree, &mut problems);
    // An option of another command, and one the top page names only in a
    // sentence, are not options of this one.
    check_invocations(
        "cvl utility run --once --auto-approve",
        &mut tree,
        &mut problems,
    );
    check_invocations(
        "cvl fmt --color never --state x --mirror a=b",
        &mut tree,
        &mut problems,
    );
    check_paths(
        "scripts/no-such-script.sh and scripts/build-deb.sh",
        &workspace(),
        &workspace(),
        &mut problems,
    );
    assert_eq!(
        problems,
        [
            "`cvl` has no subcommand `aply`",
            "`cvl-apply` has no option --auto-aprove",
            "`cvl-host` has no subcommand `ad`",
            "`cvl-utility-run` has no option --auto-approve",
            "`cvl-fmt` has no option --mirror",
            "`scripts/no-such-script.sh` does not exist",
        ]
    );
}
