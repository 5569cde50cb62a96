//! The editor's documents: opened, changed, closed. These are the only
//! handlers that change the world; each change then republishes the
//! diagnostics it may have changed. A test parameters file (`*.params`) is
//! analysed whole on each change (it is a few lines), and so are those of
//! an appliance whose text changed.

use std::sync::Arc;

use cvl_syntax::{TextEdit, TextRange};
use tower_lsp::lsp_types::{
    DidChangeTextDocumentParams, DidCloseTextDocumentParams, DidOpenTextDocumentParams, Url,
};

use crate::handlers::diagnostics;
use crate::line_index::LineIndex;
use crate::state::Server;
use crate::world::Document;

/// Whether `uri` is a test parameters file.
pub fn is_params(uri: &Url) -> bool {
    uri.path().ends_with(".params")
}

pub fn did_open(server: &Server, params: DidOpenTextDocumentParams) {
    let doc = params.text_document;
    let Ok(path) = doc.uri.to_file_path() else {
        return;
    };
    let mut world = server.world();
    if is_params(&doc.uri) {
        server.versions().insert(doc.uri.clone(), doc.version);
        world.set_params(&doc.uri, doc.text, doc.version);
        diagnostics::republish_params(server, &world);
        return;
    }
    let file = world.add_local(&path, &doc.text);
    world.refresh(file);
    world.refresh_params_of(&path);
    server.versions().insert(doc.uri.clone(), doc.version);
    world.docs.insert(
        doc.uri,
        Document {
            file,
            version: doc.version,
            index: Arc::new(LineIndex::new(&doc.text)),
            text: doc.text,
        },
    );
    diagnostics::republish(server, &world, Some(file));
}

pub fn did_change(server: &Server, params: DidChangeTextDocumentParams) {
    let uri = params.text_document.uri;
    let mut world = server.world();
    if let Some(doc) = world.params.get(&uri) {
        let mut text = doc.text.clone();
        for change in params.content_changes {
            match change.range {
                Some(range) => {
                    let index = crate::line_index::LineIndex::new(&text);
                    let start = u32::from(index.offset(range.start)) as usize;
                    let end = (u32::from(index.offset(range.end)) as usize).max(start);
                    text.replace_range(start..end, &change.text);
                }
                None => text = change.text,
            }
        }
        let version = params.text_document.version;
        server.versions().insert(uri.clone(), version);
        world.set_params(&uri, text, version);
        diagnostics::republish_params(server, &world);
        return;
    }
    // Only while the analysis holds the editor's text can it take an edit;
    // else the editor's whole text replaces it.
    let in_sync = world.in_sync(&uri);
    let Some(doc) = world.docs.get_mut(&uri) else {
        return;
    };
    // One ranged change (what editors send while typing) goes to the
    // analysis as an edit, which reparses only the object it falls in.
    let mut single_edit = None;
    let changes = params.content_changes.len();
    for change in params.content_changes {
        match change.range {
            Some(range) => {
                let start = doc.index.offset(range.start);
                let end = doc.index.offset(range.end).max(start);
                let (s, e) = (u32::from(start) as usize, u32::from(end) as usize);
                doc.text.replace_range(s..e, &change.text);
                if changes == 1 {
                    single_edit = Some(TextEdit {
                        delete: TextRange::new(start, end),
                        insert: change.text,
                    });
                }
            }
            None => doc.text = change.text,
        }
        doc.index = Arc::new(LineIndex::new(&doc.text));
    }
    doc.version = params.text_document.version;
    let file = doc.file;
    server
        .versions()
        .insert(uri.clone(), params.text_document.version);
    // Changing the analysis cancels what snapshots are still computing.
    match single_edit {
        Some(edit) if in_sync && world.host().apply_edit(file, &edit) => {}
        _ => {
            let text = world.docs[&uri].text.clone();
            world.host().set_text(file, text);
        }
    }
    world.refresh(file);
    if let Ok(path) = uri.to_file_path() {
        world.refresh_params_of(&path);
    }
    diagnostics::republish(server, &world, Some(file));
}

pub fn did_close(server: &Server, params: DidCloseTextDocumentParams) {
    let mut world = server.world();
    if world.params.remove(&params.text_document.uri).is_some() {
        server.versions().remove(&params.text_document.uri);
        // Its diagnostics leave with it.
        let client = server.client.clone();
        let uri = params.text_document.uri;
        tokio::spawn(async move { client.publish_diagnostics(uri, Vec::new(), None).await });
        return;
    }
    world.docs.remove(&params.text_document.uri);
    server.versions().remove(&params.text_document.uri);
    // The file stays in the workspace with its text on disk.
    if let Ok(path) = params.text_document.uri.to_file_path() {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let file = world.add_local(&path, &text);
            world.refresh(file);
            world.refresh_params_of(&path);
            diagnostics::republish(server, &world, Some(file));
        }
    }
}
