//! The plan in the editor, through the real protocol: the suite applied
//! (recorded in the state) at DNS version 1, the workspace's lock moved to
//! DNS version 2. The code lens above AcmeSuite says `1 to update`, its hint
//! names the versions, hover lists the actions, `cvl.showPlan` answers the
//! plan as `cvl plan` prints it; an edit of `domain` adds resends within one
//! publish cycle (the server asks the client to refresh its lenses). While
//! it answers, the apply lock is held by someone else and the state file is
//! never written. Type hierarchy and the lens that says what runs an
//! appliance come from the same server.

mod common;

use common::lsp::Client;
use common::suite::{Suite, SECRETS};
use serde_json::json;
use sha2::Digest;

fn digest(path: &std::path::Path) -> String {
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn lenses(client: &mut Client, uri: &str) -> Vec<String> {
    let answer = client.request(
        "textDocument/codeLens",
        json!({ "textDocument": { "uri": uri } }),
    );
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["command"]["title"].as_str().unwrap().to_string())
        .collect()
}

fn hints(client: &mut Client, uri: &str) -> Vec<String> {
    let answer = client.request(
        "textDocument/inlayHint",
        json!({ "textDocument": { "uri": uri },
                "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 99, "character": 0 } } }),
    );
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["label"].as_str().unwrap().trim().to_string())
        .collect()
}

#[test]
fn the_editor_shows_the_plan_against_the_state_without_touching_it() {
    let suite = Suite::new();
    let first = suite.plan(&[]);
    suite.record_applied(&first);
    // DNS version 2, taken into the workspace's lock.
    let ex =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/groupware/suite");
    suite.publish("DNS", &ex.join("DNS.cvl"));
    suite.update_lock();

    let state = suite.dir.join("home/state.db");
    let before = digest(&state);
    // Someone else holds the apply lock all along: the preview never needs it.
    let store = cvl_state::Store::open(&state).unwrap();
    let _lock = store
        .lock_apply("a test", std::time::Duration::from_secs(1))
        .unwrap();

    let mut env: Vec<(String, String)> = SECRETS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("CVL_MIRRORS".into(), suite.mirror()));
    let mut client = Client::start_with_env(
        std::path::Path::new(env!("CARGO_BIN_EXE_cvl")),
        &suite.dir,
        &suite.dir.join("home"),
        &env,
    );
    let init = client.request(
        "initialize",
        json!({ "processId": null, "rootUri": format!("file://{}", suite.dir.display()),
                "capabilities": { "workspace": { "codeLens": { "refreshSupport": true },
                                                 "inlayHint": { "refreshSupport": true } } } }),
    );
    assert_eq!(
        init["capabilities"]["typeHierarchyProvider"], true,
        "{init}"
    );
    assert!(
        init["capabilities"]["codeLensProvider"].is_object(),
        "{init}"
    );
    client.notify("initialized", json!({}));
    let uri = format!("file://{}/AcmeSuite.cvl", suite.dir.display());
    let text = std::fs::read_to_string(suite.dir.join("AcmeSuite.cvl")).unwrap();
    client.open(&uri, &text);
    client.diagnostics(&uri, Some(1));

    let started = std::time::Instant::now();
    assert_eq!(lenses(&mut client, &uri), ["plan: 1 to update"]);
    eprintln!(
        "first lens in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let shown = hints(&mut client, &uri);
    assert!(
        shown.iter().any(|h| h == "d update: DNS 1 → 2"),
        "hints: {shown:?}"
    );
    let hover = client.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": { "line": 3, "character": 2 } }),
    );
    let hover = hover["contents"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        hover.contains("**Plan** against the utility's state: 1 to update")
            && hover.contains("1. `update` d: DNS 1 → 2"),
        "{hover}"
    );
    let plan = client.request(
        "workspace/executeCommand",
        json!({ "command": "cvl.showPlan", "arguments": [uri, "AcmeSuite"] }),
    );
    assert!(
        plan.as_str()
            .unwrap()
            .starts_with("Plan for AcmeSuite: 1 to update."),
        "{plan}"
    );
    let graph = client.request(
        "workspace/executeCommand",
        json!({ "command": "cvl.graphText", "arguments": [uri, "AcmeSuite"] }),
    );
    assert!(
        graph
            .as_str()
            .unwrap()
            .contains("\"h\" -> \"d\" [label=\"DHCP\"];"),
        "{graph}"
    );

    // An edit of `domain`: the server publishes, asks for the lenses again,
    // and they now resend to the appliances `domain` reaches.
    let line = text.lines().position(|l| l.contains("domain = ")).unwrap();
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 },
                "contentChanges": [{ "range": { "start": { "line": line, "character": 0 },
                                                "end": { "line": line + 1, "character": 0 } },
                                     "text": "  domain = \"acme.com\";\n" }] }),
    );
    client.diagnostics(&uri, Some(2));
    client.server_request("workspace/codeLens/refresh");
    assert_eq!(lenses(&mut client, &uri), ["plan: 1 to update · 4 resend"]);
    let shown = hints(&mut client, &uri);
    assert!(
        shown.iter().any(|h| h.contains("h resend: domain changed")),
        "hints: {shown:?}"
    );

    // Type hierarchy: AcmeSuite's parent, and what extends GroupwareSuite.
    let at_parent = text
        .lines()
        .position(|l| l.contains("extends GroupwareSuite"))
        .unwrap();
    let column = text
        .lines()
        .nth(at_parent)
        .unwrap()
        .find("GroupwareSuite")
        .unwrap();
    let items = client.request(
        "textDocument/prepareTypeHierarchy",
        json!({ "textDocument": { "uri": uri }, "position": { "line": at_parent, "character": column + 2 } }),
    );
    let item = items[0].clone();
    assert_eq!(item["name"], "GroupwareSuite", "{items}");
    assert_eq!(item["detail"], "VAN appliance", "{items}");
    let subtypes = client.request("typeHierarchy/subtypes", json!({ "item": item }));
    let names: Vec<&str> = subtypes
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"AcmeSuite"), "{subtypes}");
    let supertypes = client.request("typeHierarchy/supertypes", json!({ "item": item }));
    assert_eq!(supertypes[0]["name"], "VANAppliance", "{supertypes}");

    // What runs an appliance: the state's components, by host and version.
    let dns_uri = format!("file://{}/src/DNS/DNS.cvl", suite.dir.display());
    let dns_text = std::fs::read_to_string(suite.dir.join("src/DNS/DNS.cvl")).unwrap();
    client.open(&dns_uri, &dns_text);
    let dns_lenses = lenses(&mut client, &dns_uri);
    assert!(
        dns_lenses
            .iter()
            .any(|l| l.contains("deployed: AcmeSuite/d v1 on local (running)")),
        "{dns_lenses:?}"
    );

    client.stop();
    drop(_lock);
    assert_eq!(before, digest(&state), "the preview wrote the state");
}
