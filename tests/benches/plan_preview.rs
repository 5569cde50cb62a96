//! The plan preview's latency through the real protocol: the generated
//! workspace of 10,000 appliances in 100 files (the analysis benchmark's),
//! each file's VAN of 100 components recorded in the state as applied (a
//! state of 10,000 VMs). After each one-character edit of a deployed file,
//! the time to the code lens's answer (the plan against the state) beside
//! the time to the edit's diagnostics, over 100 edits; the server's
//! resident memory with the preview on and off. Prints figures; run with
//! `cargo bench -p cvl-e2e --bench plan_preview` (`CVL_BIN=PATH` measures
//! another build of `cvl`).

#[path = "../../cvl/tests/common/lsp.rs"]
mod lsp;
#[path = "../../cvl-analysis/benches/workspace.rs"]
#[allow(dead_code)] // the large file is the other bench's
mod workspace;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cvl_planner::plan::Plan;
use cvl_planner::record;
use serde_json::json;

fn main() {
    let cvl = std::env::var_os("CVL_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(cvl_e2e::release_binary);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    // Each file's VAN deployable as it is: its required domain set.
    let files: Vec<(String, String)> = workspace::generate(100, 100)
        .into_iter()
        .map(|(name, text)| {
            let text = match text.rfind("extends VANAppliance {\n  var \"required\" domain;\n") {
                Some(at) => {
                    let end = text[at..].find("domain;\n").unwrap() + at + "domain;\n".len();
                    format!("{}  domain = \"acme.org\";\n{}", &text[..end], &text[end..])
                }
                None => text,
            };
            (name, text)
        })
        .collect();
    for (name, text) in &files {
        std::fs::write(root.join(name), text).unwrap();
    }
    std::fs::write(
        root.join("base.vmx"),
        "memory = 64\n\n[[disk]]\ndevice = \"ide0:0\"\nfile = \"disk.img\"\n",
    )
    .unwrap();
    std::fs::write(root.join("disk.img"), vec![0u8; 4096]).unwrap();
    let home = root.join(".home");

    // The state: every file's VAN planned by `cvl plan` and recorded as
    // applied, one transaction per deployment.
    let started = Instant::now();
    // One big host (registered in the state: planning never connects).
    std::fs::create_dir_all(&home).unwrap();
    let mut store = Some(cvl_state::Store::open(&home.join("state.db")).unwrap());
    if let Some(store) = store.as_mut() {
        store
            .commit(&[cvl_planner::model::Change::HostAdded(
                cvl_planner::model::Host {
                    name: "big".into(),
                    address: Some("198.18.0.2".into()),
                    memory_mib: 1 << 30,
                    max_vms: 20_000,
                    ..Default::default()
                },
            )])
            .unwrap();
    }
    for f in 0..100 {
        let out = Command::new(&cvl)
            .args([
                "plan",
                "--deploy",
                &format!("Net{f}"),
                &format!("f{f:03}.cvl"),
            ])
            .args(["--format", "json"])
            .current_dir(&root)
            .env("CVL_HOME", &home)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: Plan = serde_json::from_slice(&out.stdout).unwrap();
        let store =
            store.get_or_insert_with(|| cvl_state::Store::open(&home.join("state.db")).unwrap());
        let mut changes = Vec::new();
        for action in &plan.actions {
            changes.extend(record::intent(&plan, action));
            changes.extend(record::applied(&plan, action));
        }
        store.commit(&changes).unwrap();
        let now = store.load().unwrap();
        store
            .commit(&record::finished(
                &plan,
                now.deployments.get(&plan.deployment),
            ))
            .unwrap();
    }
    let state = store.unwrap().load().unwrap();
    let vms: usize = state.deployments.values().map(|d| d.vms.len()).sum();
    println!(
        "state: {} deployments, {vms} VMs (made in {:.0} s)",
        state.deployments.len(),
        started.elapsed().as_secs_f64()
    );

    for preview in [true, false] {
        measure(&cvl, &root, &home, &files, preview);
    }
}

fn measure(cvl: &Path, root: &Path, home: &Path, files: &[(String, String)], preview: bool) {
    let (name, text) = &files[51];
    let uri = format!("file://{}/{name}", root.display());
    let env = [(
        "CVL_LSP_PLAN_PREVIEW".to_string(),
        if preview { "1" } else { "0" }.to_string(),
    )];
    let mut client = lsp::Client::start_with_env(cvl, root, home, &env);
    client.initialize(root);
    client.open(&uri, text);
    client.diagnostics(&uri, Some(1));
    let lens = |client: &mut lsp::Client| {
        client.request(
            "textDocument/codeLens",
            json!({ "textDocument": { "uri": uri } }),
        )
    };
    let first = Instant::now();
    let lenses = lens(&mut client);
    let first = first.elapsed();
    let titles: Vec<String> = lenses
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["command"]["title"].as_str())
        .filter(|t| t.starts_with("plan"))
        .map(str::to_string)
        .collect();
    let needle = "v2 = \"50-3-2\"";
    let offset = text.find(needle).unwrap() + needle.len() - 2;
    let line = text[..offset].matches('\n').count();
    let character = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let (mut lens_ms, mut diag_ms) = (Vec::new(), Vec::new());
    let edit = |client: &mut lsp::Client, version: i64| {
        client.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri, "version": version },
                "contentChanges": [{
                    "range": { "start": { "line": line, "character": character },
                               "end": { "line": line, "character": character + 1 } },
                    "text": (version % 10).to_string(),
                }],
            }),
        );
    };
    // The edit's diagnostics alone, then the lens alone (asked at once
    // after the edit, as a client refreshing it does), 100 edits each.
    for version in 2..102i64 {
        let sent = Instant::now();
        edit(&mut client, version);
        client.diagnostics(&uri, Some(version));
        diag_ms.push(sent.elapsed());
        client.notifications.clear();
    }
    for version in 102..202i64 {
        let sent = Instant::now();
        edit(&mut client, version);
        lens(&mut client);
        lens_ms.push(sent.elapsed());
        client.diagnostics(&uri, Some(version));
        client.notifications.clear();
    }
    let p = |samples: &mut Vec<Duration>, q: f64| {
        samples.sort();
        samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
    };
    println!(
        "preview {}: plan lens {:?} (first in {:.0} ms)",
        if preview { "on" } else { "off" },
        titles,
        first.as_secs_f64() * 1e3
    );
    println!(
        "  didChange -> codeLens answered: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        p(&mut lens_ms, 0.5),
        p(&mut lens_ms, 0.9),
        p(&mut lens_ms, 0.99)
    );
    println!(
        "  didChange -> publishDiagnostics (in the same run): p50 {:.2} ms, p90 {:.2} ms",
        p(&mut diag_ms, 0.5),
        p(&mut diag_ms, 0.9)
    );
    println!("  server resident memory: {:.0} MiB", client.rss_mib());
    client.stop();
}
