//! The tree-sitter grammar (editors/tree-sitter-cvl) with the real
//! tree-sitter CLI and a real editor: its committed parser is what
//! grammar.js generates, its corpus passes, every `.cvl` file of the
//! repository gets the same verdict as cvl-syntax's parser (well-formed or
//! not), and headless Neovim highlights a keyword through its queries.
//! Needs the CLI (`tree-sitter` on $PATH or $CVL_TREE_SITTER: `.ci/run`
//! installs it), a C compiler and `nvim`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn grammar() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../editors/tree-sitter-cvl")
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tree-sitter CLI, run in `dir` with a cache of its own.
fn tree_sitter(dir: &Path, args: &[&str], home: &Path) -> Output {
    let cli = std::env::var_os("CVL_TREE_SITTER").unwrap_or_else(|| "tree-sitter".into());
    Command::new(&cli)
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("TREE_SITTER_LIBDIR", home.join("lib"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the tree-sitter CLI {cli:?} ({e}): `cargo install tree-sitter-cli \
                 --locked --no-default-features`, or set CVL_TREE_SITTER (.ci/run installs it)"
            )
        })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_committed_parser_is_what_the_grammar_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("grammar");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["grammar.js", "tree-sitter.json"] {
        std::fs::copy(grammar().join(f), copy.join(f)).unwrap();
    }
    let out = tree_sitter(&copy, &["generate", "--abi", "14"], tmp.path());
    assert!(
        out.status.success(),
        "tree-sitter generate:\n{}",
        text(&out)
    );
    for f in ["parser.c", "grammar.json", "node-types.json"] {
        let made = std::fs::read_to_string(copy.join("src").join(f)).unwrap();
        let committed = std::fs::read_to_string(grammar().join("src").join(f)).unwrap();
        assert!(
            made == committed,
            "editors/tree-sitter-cvl/src/{f} is not what grammar.js generates: run \
             `tree-sitter generate --abi 14` there and commit src/"
        );
    }
}

#[test]
fn the_corpus_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tree_sitter(&grammar(), &["test"], tmp.path());
    let said = text(&out);
    assert!(out.status.success(), "tree-sitter test:\n{said}");
    // Every case of cvl-syntax is in the corpus.
    let corpus: String = ["ok", "err"]
        .iter()
        .map(|k| std::fs::read_to_string(grammar().join(format!("test/corpus/{k}.txt"))).unwrap())
        .collect();
    for kind in ["ok", "err"] {
        let dir = workspace().join("cvl-syntax/test_data/parser").join(kind);
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "cvl") {
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                assert!(
                    corpus.contains(&format!("\n{kind}: {name}\n")),
                    "the corpus lacks {kind}/{name}: run editors/tree-sitter-cvl/scripts/corpus.sh"
                );
            }
        }
    }
}

/// Every `.cvl` file of the repository (examples, diagnostics cases,
/// parser cases, repositories): tree-sitter finds an error exactly where
/// cvl-syntax does.
#[test]
fn every_cvl_file_parses_as_cvl_syntax_says() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    walk(&workspace(), &mut files);
    assert!(
        files.len() > 50,
        "too few .cvl files found: {}",
        files.len()
    );
    let mut disagree = Vec::new();
    let mut broken = 0;
    for chunk in files.chunks(64) {
        let mut args = vec!["parse", "--quiet"];
        let names: Vec<String> = chunk.iter().map(|f| f.display().to_string()).collect();
        args.extend(names.iter().map(String::as_str));
        let out = tree_sitter(&grammar(), &args, tmp.path());
        let said = text(&out);
        for file in chunk {
            let source = std::fs::read_to_string(file).unwrap();
            let ours = cvl_syntax::parse(&source).errors().is_empty();
            // `--quiet` names only the files with ERROR or MISSING nodes.
            let theirs = !said
                .lines()
                .any(|l| l.starts_with(&file.display().to_string()));
            if !ours {
                broken += 1;
            }
            if ours != theirs {
                disagree.push(format!(
                    "{}: cvl-syntax says {}, tree-sitter {}",
                    file.display(),
                    if ours { "well-formed" } else { "broken" },
                    if theirs { "well-formed" } else { "broken" }
                ));
            }
        }
    }
    assert!(
        broken >= 12,
        "the broken parser cases were not seen ({broken})"
    );
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else if name.ends_with(".cvl") {
            out.push(path.canonicalize().unwrap());
        }
    }
}

const DRIVER: &str = r#"
local buf = vim.api.nvim_get_current_buf()
local started = require('cvl').treesitter(buf)
local out = { started = started, captures = {} }
if started then
  local hl = vim.treesitter.highlighter.active[buf]
  out.active = hl ~= nil
  local parser = vim.treesitter.get_parser(buf, 'cvl')
  local root = parser:parse()[1]:root()
  local query = hl:get_query('cvl')
  for id, node in query:query():iter_captures(root, buf, 0, 1) do
    local _, col = node:range()
    table.insert(out.captures, {
      name = query:query().captures[id],
      col = col,
      -- The highlight group the highlighter draws it with (0.7: its cache).
      group = vim.fn.synIDattr(query.hl_cache and query.hl_cache[id] or 0, 'name'),
    })
  end
end
vim.fn.writefile({ vim.fn.json_encode(out) }, vim.env.CVL_TEST_OUT)
vim.cmd('qall!')
"#;

#[test]
fn neovim_highlights_a_keyword_through_the_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The parser as a user builds it: parser/cvl.so on the runtime path.
    std::fs::create_dir_all(dir.join("rt/parser")).unwrap();
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-I"])
        .arg(grammar().join("src"))
        .arg(grammar().join("src/parser.c"))
        .arg("-o")
        .arg(dir.join("rt/parser/cvl.so"))
        .output()
        .expect("a C compiler (cc)");
    assert!(cc.status.success(), "cc:\n{}", text(&cc));
    std::fs::write(
        dir.join("a.cvl"),
        "A extends VMAppliance {\n  vm = \"a.vmx\";\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("driver.lua"), DRIVER).unwrap();
    let editors = grammar().join("../neovim").canonicalize().unwrap();
    let out_file = dir.join("out.json");
    let mut child = Command::new("nvim")
        .args(["--headless", "--clean"])
        .args([
            "--cmd",
            &format!(
                "set runtimepath^={},{}",
                editors.display(),
                dir.join("rt").display()
            ),
        ])
        .args(["-c", "edit a.cvl", "-c", "luafile driver.lua"])
        .current_dir(dir)
        .env("CVL_TEST_OUT", &out_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nvim (Debian: neovim)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("headless Neovim did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).expect("the driver wrote its result"))
            .unwrap();
    assert_eq!(
        result["started"], true,
        "no tree-sitter highlighting: {result:#}"
    );
    assert_eq!(result["active"], true, "{result:#}");
    let captures = result["captures"].as_array().unwrap();
    let at = |col: u64| {
        captures
            .iter()
            .filter(|c| c["col"] == col)
            .map(|c| c["name"].as_str().unwrap())
            .collect::<Vec<_>>()
    };
    // `A extends VMAppliance {`: the keyword, the new type, the builtin.
    assert!(at(2).contains(&"keyword"), "{result:#}");
    assert!(at(0).contains(&"type.definition"), "{result:#}");
    assert!(at(10).contains(&"type.builtin"), "{result:#}");
    let keyword = captures.iter().find(|c| c["name"] == "keyword").unwrap();
    assert!(
        keyword["group"].as_str().unwrap().contains("Keyword"),
        "the keyword capture maps to no keyword highlight group: {result:#}"
    );
}
