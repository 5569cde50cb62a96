//! The language server as an editor drives it: the real `cvl lsp` binary,
//! JSON-RPC over stdio. Responses are snapshotted with the workspace folder
//! written as `$ROOT`.

use std::path::Path;

use serde_json::{json, Value};

mod common;
use common::lsp::Client;

const DNS: &str = "CVL = \"0.8\";\nDns extends VMAppliance {\n  var \"required\" domain;\n  var port;\n  port = \"53\";\n  vm = \"dns.vm\";\n}\n";

const NET: &str = "import { url => \"file://./lib\", cvl => \"Dns.cvl\" } Dns;\n/* A network: é and 🙂 before names test UTF-16 columns. */\nNet extends VANAppliance {\n  var \"required\" domain;\n  /* é🙂 */ Dns   d;\n  d.domain = domain;\n  vanIF = \"d.ethernet0\";\n}\n";

fn pos(text: &str, needle: &str, nth: usize) -> Value {
    let offset = text.match_indices(needle).nth(nth).unwrap().0;
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let col: usize = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .map(char::len_utf16)
        .sum();
    json!({ "line": line, "character": col })
}

#[test]
fn an_editor_session() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::write(root.join("lib/Dns.cvl"), DNS).unwrap();
    std::fs::write(root.join("net.cvl"), NET).unwrap();
    let uri = format!("file://{}/net.cvl", root.display());
    let lib_uri = format!("file://{}/lib/Dns.cvl", root.display());

    let mut client = Client::start(Path::new(env!("CARGO_BIN_EXE_cvl")), &root);
    let init = client.initialize(&root);
    assert_eq!(init["capabilities"]["positionEncoding"], "utf-16");
    client.open(&uri, NET);
    let opened = client.diagnostics(&uri, Some(1));
    insta::assert_json_snapshot!("lsp_diagnostics_on_open", client.relative(&opened));

    // An incremental edit that misspells a name: the same diagnostic as `cvl check`.
    let typo_at = pos(NET, "domain;\n  vanIF", 0);
    let end =
        json!({ "line": typo_at["line"], "character": typo_at["character"].as_u64().unwrap() + 6 });
    client.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri, "version": 2 },
            "contentChanges": [{ "range": { "start": typo_at, "end": end }, "text": "domian" }],
        }),
    );
    let edited = client.diagnostics(&uri, Some(2));
    let unresolved: Vec<&Value> = edited
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "unresolved-name")
        .collect();
    assert_eq!(unresolved.len(), 1, "{edited:#}");
    assert!(unresolved[0]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean `domain`?"));
    assert_eq!(unresolved[0]["range"]["start"], typo_at);
    let text_v2 = NET.replacen("domain;\n  vanIF", "domian;\n  vanIF", 1);

    // The quick fix for it.
    let actions = client.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": uri }, "range": { "start": typo_at, "end": typo_at }, "context": { "diagnostics": [] } }),
    );
    assert_eq!(actions[0]["title"], "Change to `domain`");
    // Undo the typo as the editor would after applying it.
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 3 }, "contentChanges": [{ "text": NET }] }),
    );
    client.diagnostics(&uri, Some(3));
    let _ = text_v2;

    // Hover on `d.domain`'s `domain`: its declaration, attributes and final value.
    let hover = client.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": pos(NET, "domain = domain", 0) }),
    );
    insta::assert_json_snapshot!("lsp_hover_parameter", client.relative(&hover));

    // Definition of the component's type, across the import.
    let definition = client.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri }, "position": pos(NET, "Dns   d", 0) }),
    );
    assert_eq!(definition["uri"], lib_uri);
    insta::assert_json_snapshot!("lsp_definition_across_import", client.relative(&definition));

    // Completion after `d.`: the component's parameters.
    let completion = client.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": uri }, "position": pos(NET, "domain = domain", 0) }),
    );
    let labels: Vec<&str> = completion
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    for expected in ["domain", "port", "vm", "ethernet0"] {
        assert!(labels.contains(&expected), "{labels:?}");
    }

    // Rename the DNS parameter `domain` across both files.
    let rename = client.request(
        "textDocument/rename",
        json!({ "textDocument": { "uri": lib_uri }, "position": pos(DNS, "domain", 0), "newName": "zone" }),
    );
    insta::assert_json_snapshot!("lsp_rename_across_files", client.relative(&rename));
    // A predefined parameter cannot be renamed.
    let error = client.request_error(
        "textDocument/rename",
        json!({ "textDocument": { "uri": uri }, "position": pos(NET, "vanIF", 0), "newName": "x" }),
    );
    assert!(error.contains("cannot be renamed"), "{error}");

    let formatting = client.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    insta::assert_json_snapshot!("lsp_formatting", formatting);

    // Two edits in a row: once version 5's diagnostics arrive, none for
    // version 4 may follow (a stale result is never shown).
    let typo = NET.replace("domain;\n  vanIF", "domian;\n  vanIF");
    for (version, text) in [(4, typo.as_str()), (5, NET)] {
        client.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [{ "text": text }] }),
        );
    }
    let latest = client.diagnostics(&uri, Some(5));
    let codes: Vec<&Value> = latest
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["code"])
        .collect();
    assert!(!codes.contains(&&json!("unresolved-name")), "{latest:#}");
    client.notifications.clear(); // what came before version 5 may be older
    std::thread::sleep(std::time::Duration::from_millis(300));
    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri } }),
    );
    let stale = client
        .notifications
        .iter()
        .filter(|m| m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri)
        .any(|m| m["params"]["version"].as_i64().is_some_and(|v| v < 5));
    assert!(
        !stale,
        "diagnostics of an older version came after the newest"
    );

    // References of DNS's `domain`: its declaration and the use in net.cvl.
    let references = client.request(
        "textDocument/references",
        json!({ "textDocument": { "uri": lib_uri }, "position": pos(DNS, "domain", 0), "context": { "includeDeclaration": true } }),
    );
    let files: Vec<&str> = references
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["uri"].as_str().unwrap())
        .collect();
    assert_eq!(files, [lib_uri.as_str(), uri.as_str()]);
    let found = client.request("workspace/symbol", json!({ "query": "ne" }));
    assert_eq!(found[0]["name"], "Net");
    let folds = client.request(
        "textDocument/foldingRange",
        json!({ "textDocument": { "uri": uri } }),
    );
    assert!(
        folds
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["startLine"] == 2),
        "{folds}"
    );
    // The value `d.domain` gets, inline.
    let hints = client.request(
        "textDocument/inlayHint",
        json!({ "textDocument": { "uri": uri }, "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 9, "character": 0 } } }),
    );
    assert_eq!(hints[0]["label"], " ⇒ (unset)");
    assert_eq!(hints[0]["position"]["line"], 5);
    // The hint that users of Net must set `domain` comes with its fix.
    let at = pos(NET, "domain;", 0);
    let actions = client.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": uri }, "range": { "start": at, "end": at }, "context": { "diagnostics": [] } }),
    );
    assert_eq!(
        actions[0]["title"], "Add `domain = \"\";` to `Net`",
        "{actions:#}"
    );
    assert_eq!(symbols[1]["name"], "Net");
    let tokens = client.request(
        "textDocument/semanticTokens/full",
        json!({ "textDocument": { "uri": uri } }),
    );
    assert!(tokens["data"].as_array().unwrap().len() > 20);
    client.stop();
}

/// The server ends on `exit` even while its input stays open
/// (tower-lsp#399): code 0 after `shutdown`, 1 without.
#[test]
fn exit_ends_the_server_with_the_code_lsp_prescribes() {
    for shutdown in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let mut client = Client::start(Path::new(env!("CARGO_BIN_EXE_cvl")), &root);
        client.initialize(&root);
        let code = client.exit_keeping_input_open(shutdown);
        assert_eq!(
            code,
            Some(if shutdown { 0 } else { 1 }),
            "shutdown first: {shutdown}"
        );
    }
}

/// An editor opened on the shipped examples: the server takes the mirrors
/// of `examples/cvl.toml`, so the paper's imports resolve with no flags or
/// environment (the same as `cvl check`, see `examples.rs`).
#[test]
fn the_server_reads_the_examples_workspace_settings() {
    let home = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/groupware")
        .canonicalize()
        .unwrap();
    let file = root.join("AcmeGroupware.cvl");
    let uri = format!("file://{}", file.display());
    let text = std::fs::read_to_string(&file).unwrap();
    let mut client =
        Client::start_with_home(Path::new(env!("CARGO_BIN_EXE_cvl")), &root, home.path());
    client.initialize(&root);
    client.open(&uri, &text);
    let diagnostics = client.diagnostics(&uri, Some(1));
    let codes: Vec<&str> = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert!(!codes.contains(&"bad-import"), "{diagnostics:#}");
    assert!(
        diagnostics
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["severity"] != 1),
        "errors: {diagnostics:#}"
    );
    client.stop();
}

/// A file of `n` objects like the large-file benchmark's (about 200 bytes
/// each).
fn large_file(n: usize) -> String {
    let mut text = String::from("CVL = \"0.8\";\n");
    for i in 0..n {
        text.push_str(&format!(
            "A{i} extends VMAppliance {{\n  var \"required\" domain, x{i};\n  var motd;\n  vm = \"a.vmx\";\n  motd = {{ host => \"h{i}\", dom => domain, n => {{ a => \"x y\", b => \"z\" }} }};\n  domain = \"acme{i}.org\";\n  x{i} = \"v\";\n}}\n"
        ));
    }
    text
}

/// A request that takes long (a hover over a large file, which finds every
/// name of the file first) does not delay an edit that follows it: the
/// edit cancels it (the hover answers `ContentModified`, and the editor asks
/// again), and a request after the edit is answered at once, not after the
/// hover would have finished.
#[test]
fn a_slow_request_does_not_delay_the_edit_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let big_text = large_file(4000);
    let small_text = "CVL = \"0.8\";\nSmall extends VMAppliance {\n  vm = \"s.vmx\";\n}\n";
    let big = format!("file://{}/big.cvl", root.display());
    let small = format!("file://{}/small.cvl", root.display());
    std::fs::write(root.join("big.cvl"), &big_text).unwrap();
    std::fs::write(root.join("small.cvl"), small_text).unwrap();
    let mut client = Client::start(Path::new(env!("CARGO_BIN_EXE_cvl")), &root);
    client.initialize(&root);
    for (uri, text) in [(&big, big_text.as_str()), (&small, small_text)] {
        client.open(uri, text);
    }
    client.diagnostics(&big, Some(1));
    let on_big =
        json!({ "textDocument": { "uri": big }, "position": pos(&big_text, "domain =", 200) });
    let on_small =
        json!({ "textDocument": { "uri": small }, "position": pos(small_text, "Small", 0) });
    // One character typed inside an object: every later hover over the
    // big file finds all of its names again.
    let mut version = 1;
    let mut text = big_text.clone();
    let mut type_one = |client: &mut Client| {
        version += 1;
        let at = pos(&text, "x\"", 0);
        text = text.replacen("x\"", "xy\"", 1);
        client.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": big, "version": version },
                "contentChanges": [{ "range": { "start": at, "end": at }, "text": "y" }],
            }),
        );
    };

    // How long the hover takes when nothing interrupts it.
    type_one(&mut client);
    let started = std::time::Instant::now();
    let id = client.send_request("textDocument/hover", on_big.clone());
    let answer = client.response(id);
    let hover_alone = started.elapsed();
    assert!(answer["result"]["contents"]["value"]
        .as_str()
        .is_some_and(|v| v.contains("domain")));

    // The same hover, with an edit and a small request right behind it.
    type_one(&mut client);
    let slow = client.send_request("textDocument/hover", on_big.clone());
    std::thread::sleep(hover_alone / 10); // the hover is under way
    let sent = std::time::Instant::now();
    type_one(&mut client);
    let quick = client.send_request("textDocument/hover", on_small.clone());
    let quick_answer = client.response(quick);
    let after_edit = sent.elapsed();
    assert!(quick_answer["result"]["contents"]["value"]
        .as_str()
        .is_some_and(|v| v.contains("Small")));
    let slow_answer = client.response(slow);
    assert_eq!(
        slow_answer["error"]["code"], -32801,
        "the edit cancels the hover (ContentModified): {slow_answer}"
    );
    assert!(
        after_edit < hover_alone / 3,
        "a request after the edit waited {after_edit:?}; the hover alone takes {hover_alone:?}"
    );
    eprintln!("hover alone {hover_alone:?}; edit + small request behind it {after_edit:?}");

    // Asked again, the hover answers.
    let again = client.request("textDocument/hover", on_big);
    assert!(again["contents"]["value"].as_str().is_some());
    client.stop();
}

/// A label in another file (where an inherited parameter is declared)
/// becomes related information at its place in that file.
#[test]
fn labels_in_other_files_become_related_information() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::write(root.join("lib/Dns.cvl"), DNS).unwrap();
    let mine = "import { url => \"file://./lib\", cvl => \"Dns.cvl\" } Dns;\nMine extends Dns {\n  var domain;\n}\n";
    std::fs::write(root.join("mine.cvl"), mine).unwrap();
    let uri = format!("file://{}/mine.cvl", root.display());
    let lib_uri = format!("file://{}/lib/Dns.cvl", root.display());
    let mut client = Client::start(Path::new(env!("CARGO_BIN_EXE_cvl")), &root);
    client.initialize(&root);
    client.open(&uri, mine);
    let diagnostics = client.diagnostics(&uri, Some(1));
    let duplicate = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "duplicate-declaration")
        .unwrap_or_else(|| panic!("{diagnostics:#}"));
    let related = &duplicate["relatedInformation"][0];
    assert_eq!(
        related["location"]["uri"],
        lib_uri.as_str(),
        "{duplicate:#}"
    );
    assert_eq!(
        related["location"]["range"]["start"],
        pos(DNS, "domain;", 0),
        "{duplicate:#}"
    );
    client.stop();
}

/// Hover on an import from a signed repository says who signed it and
/// until when its timestamp holds; an unsigned one is a warning on the
/// import, the same as `cvl check`'s.
#[test]
fn an_imports_hover_names_the_key_that_signed_its_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let dns = root.join("Dns.cvl");
    std::fs::write(&dns, DNS).unwrap();
    let staged = common::stage(&root, "Dns", &dns, 1);
    common::create_signed(&root, "signed");
    common::ok_in(&root, "home", &["repo", "create", "plain"]);
    let key = common::key(&root);
    let keyid = String::from_utf8(
        common::ok_in(&root, "home", &["key", "show", &key, "--format", "json"]).stdout,
    )
    .unwrap();
    let keyid: Value = serde_json::from_str(&keyid).unwrap();
    let keyid = keyid["keyid"].as_str().unwrap().to_string();
    for (repo, signed) in [("signed", true), ("plain", false)] {
        let mut args = vec!["publish", repo, staged.to_str().unwrap()];
        if signed {
            args.extend(["--key", &key]);
        }
        common::ok_in(&root, "home", &args);
    }
    let net = "import { url => \"file://./signed\", cvl => \"Dns.cvl\" } Dns;\n\
               import { url => \"file://./plain\", cvl => \"Dns.cvl\" } Plain;\n";
    std::fs::write(root.join("net.cvl"), net).unwrap();
    let uri = format!("file://{}/net.cvl", root.display());
    let mut client = Client::start_with_home(
        Path::new(env!("CARGO_BIN_EXE_cvl")),
        &root,
        &root.join("home"),
    );
    client.initialize(&root);
    client.open(&uri, net);
    let diagnostics = client.diagnostics(&uri, Some(1));
    let unsigned: Vec<&Value> = diagnostics
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "unsigned-repository")
        .collect();
    assert_eq!(unsigned.len(), 1, "{diagnostics:#}");
    assert_eq!(unsigned[0]["range"]["start"]["line"], 1, "{diagnostics:#}");
    let hover = client.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": pos(net, "Dns;", 0) }),
    );
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(
        text.contains(&format!("signed by key {}", &keyid[..16])),
        "{text}"
    );
    assert!(text.contains("its timestamp (version 2) expires"), "{text}");
    let hover = client.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": pos(net, "Plain;", 0) }),
    );
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(!text.contains("signed by"), "{text}");
    client.stop();
}

/// A test parameters file (`cvl test --params`): its lines checked as
/// `cvl check` checks them, against the appliance beside it (errors at
/// their line, a required parameter without a value with the line to add)
/// and its names completed from the appliance's members; an edit of the
/// appliance rechecks it.
#[test]
fn a_test_parameters_file_is_checked_against_its_appliance_and_completed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("dns")).unwrap();
    let appliance = "CVL = \"0.8\";\nDns extends VMAppliance {\n  var \"required\" domain, hostname;\n  var \"sensitive\" rootpw;\n  var port;\n  port = \"53\";\n}\n";
    std::fs::write(root.join("dns/Dns.cvl"), appliance).unwrap();
    let params = "# the test's values\ndomian=acme.org\nrootpw=hunter2\nethernet0.\n";
    std::fs::write(root.join("dns/test.params"), params).unwrap();
    let uri = format!("file://{}/dns/test.params", root.display());
    let mut client = Client::start(Path::new(env!("CARGO_BIN_EXE_cvl")), &root);
    client.initialize(&root);
    client.open(&uri, params);
    let said = client.diagnostics(&uri, Some(1));
    let brief: Vec<(String, u64, String)> = said
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["range"]["start"]["line"].as_u64().unwrap(),
                d["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |code: &str, line: u64, text: &str| {
        brief
            .iter()
            .any(|(c, l, m)| c == code && *l == line && m.contains(text))
    };
    assert!(
        has("missing-required", 0, "add the line `domain=VALUE`"),
        "{brief:#?}"
    );
    assert!(has("missing-required", 0, "`hostname`"), "{brief:#?}");
    assert!(
        has("unresolved-name", 1, "did you mean `domain`?"),
        "{brief:#?}"
    );
    assert!(
        has("sensitive-literal", 2, "CVL_SECRET_DNS_ROOTPW"),
        "{brief:#?}"
    );
    assert!(has("syntax-error", 3, "is not NAME=VALUE"), "{brief:#?}");
    assert_eq!(brief.len(), 5, "{brief:#?}");

    let complete = |client: &mut Client, line: u64, character: u64| -> Vec<String> {
        let items = client.request(
            "textDocument/completion",
            json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } }),
        );
        let mut labels: Vec<String> = items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["label"].as_str().unwrap().to_string())
            .collect();
        labels.sort();
        labels
    };
    // At a name: the appliance's members; after `ethernet0.`, the
    // interface's parameters.
    let top = complete(&mut client, 1, 3);
    for name in ["domain", "hostname", "port", "ethernet0"] {
        assert!(top.contains(&name.to_string()), "{top:?}");
    }
    let interface = complete(&mut client, 3, 10);
    assert!(interface.contains(&"ip".to_string()), "{interface:?}");
    assert!(!interface.contains(&"domain".to_string()), "{interface:?}");

    // The fixed file: nothing but the sensitive value said.
    let fixed = "domain=acme.org\nhostname=d\n";
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": fixed }] }),
    );
    let said = client.diagnostics(&uri, Some(2));
    assert_eq!(said, json!([]), "{said:#}");
    // A name's hover and definition are those of the parameter it sets, in
    // the appliance.
    let at = json!({ "textDocument": { "uri": uri }, "position": { "line": 1, "character": 3 } });
    let hover = client.request("textDocument/hover", at.clone());
    let shown = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(
        shown.contains("hostname") && shown.contains("required"),
        "{hover:#}"
    );
    assert_eq!(
        hover["range"]["start"],
        json!({ "line": 1, "character": 0 }),
        "{hover:#}"
    );
    let definition = client.request("textDocument/definition", at);
    assert_eq!(
        definition["uri"],
        format!("file://{}/dns/Dns.cvl", root.display()).as_str(),
        "{definition:#}"
    );
    assert_eq!(
        definition["range"]["start"],
        pos(appliance, "hostname;", 0),
        "{definition:#}"
    );
    // The appliance gains a required parameter in the editor: the
    // parameters file says it is missing.
    let dns_uri = format!("file://{}/dns/Dns.cvl", root.display());
    client.open(&dns_uri, &appliance.replace("hostname;", "hostname, zone;"));
    let said = client.diagnostics(&uri, Some(2));
    assert!(
        said.to_string()
            .contains("required parameter `zone` has no value"),
        "{said:#}"
    );
    client.stop();
}
