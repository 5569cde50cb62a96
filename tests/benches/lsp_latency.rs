//! Language-server latency through the real protocol: the time from a
//! one-character `didChange` inside one object to the `publishDiagnostics`
//! for that version, over 200 edits, and the server's resident memory; on
//! the generated workspace of 10,000 appliances in 100 files (the analysis
//! benchmark's), and on one 1 MB file of 5,000 appliances. Prints figures;
//! run with `cargo bench -p cvl-e2e --bench lsp_latency` (`CVL_BIN=PATH` measures
//! another build of `cvl`).

#[path = "../../cvl/tests/common/lsp.rs"]
mod lsp;
#[path = "../../cvl-analysis/benches/workspace.rs"]
mod workspace;

use std::time::Instant;

use serde_json::json;

fn main() {
    let files = workspace::generate(100, 100);
    let (name, text) = &files[51];
    // The literal of `v2` in chain 3.
    let needle = "v2 = \"50-3-2\"";
    let at = text.find(needle).unwrap() + needle.len() - 2;
    measure("workspace of 100 files", &files, name.clone(), at);

    let large = workspace::large_file(5_000);
    let at = large.find("acme2500.org").unwrap() + "acme".len();
    measure(
        &format!("one file of {} bytes", large.len()),
        &[("large.cvl".to_string(), large.clone())],
        "large.cvl".to_string(),
        at,
    );
}

/// Writes `files`, opens `open`, and edits the character at byte `offset`
/// of it 200 times, each time waiting for its diagnostics.
fn measure(label: &str, files: &[(String, String)], open: String, offset: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    for (name, text) in files {
        std::fs::write(root.join(name), text).unwrap();
    }
    let text = &files.iter().find(|(n, _)| *n == open).unwrap().1;
    let uri = format!("file://{}/{open}", root.display());

    let start = Instant::now();
    // `CVL_BIN` measures another build (an A/B of two commits in one run).
    let cvl = std::env::var_os("CVL_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(cvl_e2e::release_binary);
    let mut client = lsp::Client::start(&cvl, &root);
    client.initialize(&root);
    client.open(&uri, text);
    client.diagnostics(&uri, Some(1));
    let ready = start.elapsed();

    let line = text[..offset].matches('\n').count();
    let character = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let mut samples = Vec::new();
    for version in 2..202i64 {
        let digit = (version % 10).to_string();
        let sent = Instant::now();
        client.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri, "version": version },
                "contentChanges": [{
                    "range": { "start": { "line": line, "character": character }, "end": { "line": line, "character": character + 1 } },
                    "text": digit,
                }],
            }),
        );
        client.diagnostics(&uri, Some(version));
        samples.push(sent.elapsed());
        client.notifications.clear();
    }
    samples.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let p = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    println!(
        "{label}: {} files, {} objects",
        files.len(),
        files
            .iter()
            .map(|(_, t)| t.matches(" extends ").count())
            .sum::<usize>()
    );
    println!(
        "  initialize + open + first diagnostics: {:.0} ms",
        ms(ready)
    );
    println!("  didChange -> publishDiagnostics over {} edits: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms", samples.len(), p(0.5), p(0.9), p(0.99), ms(*samples.last().unwrap()));
    println!("  server resident memory: {:.0} MiB", client.rss_mib());
    client.stop();
}
