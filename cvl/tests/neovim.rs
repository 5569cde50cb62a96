//! A real third-party client: headless Neovim with the configuration of
//! `editors/neovim`, its built-in LSP client talking to `cvl lsp`. Checks
//! that the server's diagnostics reach the editor. Needs `nvim` (the
//! `neovim` Debian package, which `.ci/run` installs).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const DRIVER: &str = r#"
local ok = vim.wait(15000, function() return #vim.diagnostic.get(0) > 0 end, 50)
local out = {}
for _, d in ipairs(vim.diagnostic.get(0)) do
  table.insert(out, { lnum = d.lnum, col = d.col, message = d.message,
                      code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code) })
end
vim.fn.writefile({ vim.fn.json_encode({ ok = ok, filetype = vim.bo.filetype, diagnostics = out }) }, vim.env.CVL_TEST_OUT)
vim.cmd("qall!")
"#;

#[test]
fn neovim_receives_the_servers_diagnostics() {
    let nvim = Command::new("nvim").arg("--version").output();
    assert!(
        nvim.is_ok_and(|o| o.status.success()),
        "nvim is not installed: `apt-get install neovim` (.ci/run installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("broken.cvl"),
        "Dns extends VMApplianse {\n  vm = \"dns.vm\";\n}\n",
    )
    .unwrap();
    let result = drive(
        dir,
        &dir.join(".home"),
        "broken.cvl",
        DRIVER,
        Duration::from_secs(40),
    );
    assert_eq!(result["filetype"], "cvl", "{result:#}");
    assert_eq!(result["ok"], true, "no diagnostics arrived: {result:#}");
    let diagnostics = result["diagnostics"].as_array().unwrap();
    let unresolved = diagnostics
        .iter()
        .find(|d| d["code"] == "unresolved-name")
        .unwrap_or_else(|| panic!("{result:#}"));
    assert_eq!(unresolved["lnum"], 0);
    assert_eq!(unresolved["col"], 12);
    assert!(unresolved["message"]
        .as_str()
        .unwrap()
        .contains("did you mean `VMAppliance`?"));
}

/// A test parameters file (`*.params`) is its own filetype, and the same
/// server checks it against the appliance beside it.
#[test]
fn neovim_checks_a_test_parameters_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("Dns.cvl"),
        "Dns extends VMAppliance {\n  var \"required\" domain;\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("test.params"), "# no domain yet\n").unwrap();
    let result = drive(
        dir,
        &dir.join(".home"),
        "test.params",
        DRIVER,
        Duration::from_secs(40),
    );
    assert_eq!(result["filetype"], "cvlparams", "{result:#}");
    assert_eq!(result["ok"], true, "no diagnostics arrived: {result:#}");
    let diagnostics = result["diagnostics"].as_array().unwrap();
    assert!(
        diagnostics.iter().any(|d| d["code"] == "missing-required"
            && d["message"]
                .as_str()
                .unwrap()
                .contains("add the line `domain=VALUE`")),
        "{result:#}"
    );
}

/// The workspace root the configuration gives the server: the folder that
/// holds `cvl.lock` (a file) or `.git` (a folder) above the file.
#[test]
fn neovim_roots_the_workspace_at_the_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let locked = base.join("locked");
    let git = base.join("git");
    std::fs::create_dir_all(locked.join("sub")).unwrap();
    std::fs::create_dir_all(git.join(".git")).unwrap();
    std::fs::create_dir_all(git.join("sub")).unwrap();
    std::fs::write(locked.join("cvl.lock"), "").unwrap();
    let editors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../editors/neovim");
    for (project, expect) in [(&locked, &locked), (&git, &git)] {
        let file = project.join("sub/a.cvl");
        let out = base.join("root.txt");
        let lua = format!(
            "lua vim.fn.writefile({{ require('cvl').root_of('{}') }}, '{}')",
            file.display(),
            out.display()
        );
        let status = Command::new("nvim")
            .args(["--headless", "--clean"])
            .args(["--cmd", &format!("set runtimepath^={}", editors.display())])
            .args(["-c", &lua, "-c", "qall!"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let root = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            root.trim(),
            expect.display().to_string(),
            "for {}",
            file.display()
        );
    }
}

const LENS_DRIVER: &str = r#"
local buf = vim.api.nvim_get_current_buf()
local function client()
  return vim.lsp.get_active_clients()[1]
end
vim.wait(15000, function() return client() ~= nil and client().initialized end, 50)
local lenses = {}
vim.wait(15000, function()
  local answer = vim.lsp.buf_request_sync(buf, "textDocument/codeLens",
    { textDocument = vim.lsp.util.make_text_document_params(buf) }, 5000)
  lenses = {}
  for _, r in pairs(answer or {}) do
    for _, l in ipairs(r.result or {}) do
      table.insert(lenses, l.command and l.command.title or "")
    end
  end
  return #lenses > 0
end, 200)
-- The type hierarchy of `Web` where `Net` declares a component of it.
local params = { textDocument = vim.lsp.util.make_text_document_params(buf),
                 position = { line = 2, character = 3 } }
local prepared = vim.lsp.buf_request_sync(buf, "textDocument/prepareTypeHierarchy", params, 5000)
local item
for _, r in pairs(prepared or {}) do item = r.result and r.result[1] end
local supertypes = {}
if item then
  local answer = vim.lsp.buf_request_sync(buf, "typeHierarchy/supertypes", { item = item }, 5000)
  for _, r in pairs(answer or {}) do
    for _, i in ipairs(r.result or {}) do table.insert(supertypes, i.name) end
  end
end
-- The lens's command, carried out by the configuration: the plan in a
-- scratch buffer.
local shown = ""
local lens_answer = vim.lsp.buf_request_sync(buf, "textDocument/codeLens",
  { textDocument = vim.lsp.util.make_text_document_params(buf) }, 5000)
for id, r in pairs(lens_answer or {}) do
  for _, l in ipairs(r.result or {}) do
    if l.command and l.command.command == "cvl.showPlan" then
      vim.lsp.commands["cvl.showPlan"](l.command, { client_id = id, bufnr = buf })
      shown = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
    end
  end
end
vim.fn.writefile({ vim.fn.json_encode({ lenses = lenses, item = item and item.name or vim.NIL,
  supertypes = supertypes, shown = shown }) }, vim.env.CVL_TEST_OUT)
vim.cmd("qall!")
"#;

/// Code lenses (the plan against a state, an appliance's uses) and type
/// hierarchy answers reach Neovim's client; the configuration carries out
/// the lens's `cvl.showPlan`.
#[test]
fn neovim_receives_plan_lenses_and_the_type_hierarchy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    std::fs::write(
        dir.join("net.cvl"),
        "import { url => \"file://./lib\", cvl => \"Web.cvl\" } Web;\nNet extends VANAppliance {\n  Web a;\n  vanIF = \"a.ethernet0\";\n}\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(
        dir.join("lib/Web.cvl"),
        "Web extends VMAppliance {\n  vm = \"web.vmx\";\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("lib/web.vmx"),
        "memory = 64\n\n[[disk]]\ndevice = \"ide0:0\"\nfile = \"disk.img\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("lib/disk.img"), vec![0u8; 4096]).unwrap();
    // A state: the utility's, empty (made by a command that reads it).
    let home = dir.join(".home");
    let made = Command::new(env!("CARGO_BIN_EXE_cvl"))
        .args(["pool", "show"])
        .env("CVL_HOME", &home)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    assert!(home.join("state.db").is_file());
    let result = drive(&dir, &home, "net.cvl", LENS_DRIVER, Duration::from_secs(60));
    let lenses: Vec<&str> = result["lenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lenses, ["plan: 1 to start"], "{result:#}");
    assert_eq!(result["item"], "Web", "{result:#}");
    assert_eq!(result["supertypes"][0], "VMAppliance", "{result:#}");
    assert!(
        result["shown"]
            .as_str()
            .unwrap()
            .starts_with("Plan for Net: 1 to start."),
        "{result:#}"
    );
}

/// Runs headless Neovim in `dir` with the configuration of `editors/neovim`
/// (the server being this build's `cvl lsp`, its home `home`), opens
/// `file`, then runs `driver` (Lua that writes its findings as JSON to
/// $CVL_TEST_OUT and quits); the findings. A stuck editor fails the test
/// after `limit` instead of hanging the suite.
fn drive(
    dir: &std::path::Path,
    home: &std::path::Path,
    file: &str,
    driver: &str,
    limit: Duration,
) -> serde_json::Value {
    std::fs::write(dir.join("driver.lua"), driver).unwrap();
    let editors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../editors/neovim");
    let setup = format!(
        "lua require('cvl').setup({{ cmd = {{ '{}', 'lsp' }} }})",
        env!("CARGO_BIN_EXE_cvl")
    );
    let out_file = dir.join("out.json");
    let mut child = Command::new("nvim")
        .args(["--headless", "--clean"])
        .args(["--cmd", &format!("set runtimepath^={}", editors.display())])
        .args(["--cmd", "filetype on"])
        .args(["-c", &setup])
        .args(["-c", &format!("edit {file}")])
        .args(["-c", "luafile driver.lua"])
        .current_dir(dir)
        .env("CVL_TEST_OUT", &out_file)
        .env("CVL_HOME", home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("headless Neovim did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    serde_json::from_slice(&std::fs::read(&out_file).expect("the driver wrote its result")).unwrap()
}
