//! Publishing diagnostics: after a change, the changed file's and those of
//! every workspace file importing it, computed on a snapshot off the async
//! runtime, and sent only if no newer edit of the document came in
//! meanwhile (a newer edit also cancels the computation). The open test
//! parameters files are published with every batch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use cvl_analysis::{CheckOptions, Code, SourceFile, Span};
use tower_lsp::lsp_types::{Diagnostic, Url};

use crate::line_index::LineIndex;
use crate::state::Server;
use crate::to_proto;
use crate::world::{Snapshot, World};

/// One file's diagnostics, ready to publish.
struct Publish {
    uri: Url,
    version: Option<i32>,
    diagnostics: Vec<Diagnostic>,
}

/// Publishes, in the background, the diagnostics of `changed` and of every
/// workspace file importing it (of every workspace file when `changed` is
/// `None`).
pub fn republish(server: &Server, world: &World, changed: Option<SourceFile>) {
    let snap = world.snapshot();
    let versions_now: Vec<(SourceFile, Option<i32>)> = snap
        .local_files()
        .iter()
        .map(|&f| {
            let version = world.docs.values().find(|d| d.file == f).map(|d| d.version);
            (f, version)
        })
        .collect();
    publish(server, snap, versions_now, changed);
}

/// Publishes the diagnostics of the open parameters files alone (one of
/// them changed: no CVL file depends on it).
pub fn republish_params(server: &Server, world: &World) {
    publish(server, world.snapshot(), Vec::new(), None);
}

fn publish(
    server: &Server,
    snap: Snapshot,
    versions_now: Vec<(SourceFile, Option<i32>)>,
    changed: Option<SourceFile>,
) {
    let client = server.client.clone();
    let refresh = server.refresh.clone();
    let versions = server.versions.clone();
    let publishing = server.publishing.clone();
    // The snapshot goes to the blocking pool now, not inside a task that
    // might wait for a runtime thread: an edit waits for every snapshot to
    // be dropped, and may be holding a runtime thread while it waits.
    let computed = tokio::task::spawn_blocking(move || compute(&snap, &versions_now, changed));
    tokio::spawn(async move {
        let Ok(Ok(batches)) = computed.await else {
            return;
        };
        let _publishing = publishing.lock().await;
        for batch in batches {
            let current = versions
                .lock()
                .map(|v| v.get(&batch.uri).copied())
                .unwrap_or(None);
            if batch.version.is_some() && current != batch.version {
                continue; // a newer edit superseded this result
            }
            client
                .publish_diagnostics(batch.uri, batch.diagnostics, batch.version)
                .await;
        }
        drop(_publishing);
        // The plan's lenses and hints follow the same edit (asked apart:
        // a client slow to answer holds up nothing).
        tokio::spawn(async move { refresh.now(&client).await });
    });
}

fn compute(
    snap: &Snapshot,
    files: &[(SourceFile, Option<i32>)],
    changed: Option<SourceFile>,
) -> cvl_analysis::Cancellable<Vec<Publish>> {
    let names = snap.files_by_name();
    // Each file's line index built once, however many labels point into it.
    let mut indexes: HashMap<SourceFile, Arc<LineIndex>> = HashMap::new();
    let mut index_of = |f: SourceFile| -> Arc<LineIndex> {
        indexes
            .entry(f)
            .or_insert_with(|| snap.line_index(f))
            .clone()
    };
    let mut out = Vec::new();
    for &(file, version) in files {
        let affected = match changed {
            None => true,
            Some(c) => file == c || snap.analysis.imported_files(file)?.contains(&c),
        };
        let Some(uri) = snap.uri(file).filter(|_| affected) else {
            continue;
        };
        let own = snap.analysis.file_name(file);
        let mut all = snap.analysis.diagnostics(file, &CheckOptions::default())?;
        let dir = uri
            .to_file_path()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        if let Some(dir) = dir {
            let vm_checks = cvl_repo::appliance::check(&snap.analysis, file, &dir)?;
            all.extend(vm_checks);
        }
        let index = index_of(file);
        let diagnostics = all
            .iter()
            .map(|d| to_proto::diagnostic(d, own, &index, &names, &mut index_of))
            .collect();
        out.push(Publish {
            uri,
            version,
            diagnostics,
        });
    }
    for (uri, doc) in &snap.params {
        let name = uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let said = match (&doc.analysed, &doc.problem) {
            (Some((deployment, file)), _) => {
                let options = CheckOptions {
                    deploy: vec![deployment.deployment.clone()],
                };
                let said = snap.analysis.diagnostics(*file, &options)?;
                let analysed = snap.analysis.file_name(*file);
                deployment.diagnostics(&doc.parsed, &name, &doc.text, analysed, &said)
            }
            (None, problem) => {
                let mut said: Vec<cvl_analysis::Diagnostic> = doc
                    .parsed
                    .errors
                    .iter()
                    .map(|(range, message)| {
                        cvl_analysis::Diagnostic::error(
                            Code::SyntaxError,
                            message,
                            Span {
                                file: name.clone(),
                                range: *range,
                            },
                        )
                    })
                    .collect();
                if let Some(problem) = problem {
                    said.insert(
                        0,
                        cvl_analysis::Diagnostic::error(
                            Code::UnresolvedName,
                            problem,
                            Span {
                                file: name.clone(),
                                range: Default::default(),
                            },
                        ),
                    );
                }
                said
            }
        };
        out.push(Publish {
            uri: uri.clone(),
            version: Some(doc.version),
            diagnostics: said
                .iter()
                .map(|d| to_proto::diagnostic(d, &name, &doc.index, &names, &mut index_of))
                .collect(),
        });
    }
    Ok(out)
}
