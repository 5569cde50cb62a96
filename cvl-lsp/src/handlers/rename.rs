//! Rename: the name under the cursor, everywhere in the workspace; refused
//! for a name that is not CVL's or that a published file declares.

use std::collections::HashMap;

use tower_lsp::lsp_types::{
    PrepareRenameResponse, RenameParams, TextDocumentPositionParams, TextEdit, Url, WorkspaceEdit,
};

use crate::state::{Answer, Failure};
use crate::world::Snapshot;

pub fn prepare_rename(
    snap: &Snapshot,
    params: TextDocumentPositionParams,
) -> Answer<Option<PrepareRenameResponse>> {
    let Some((file, offset)) = snap.at(&params) else {
        return Ok(None);
    };
    let index = snap.line_index(file);
    Ok(snap
        .analysis
        .prepare_rename(file, offset)?
        .map(|range| PrepareRenameResponse::Range(index.range(range))))
}

pub fn rename(snap: &Snapshot, params: RenameParams) -> Answer<Option<WorkspaceEdit>> {
    let Some((file, offset)) = snap.at(&params.text_document_position) else {
        return Ok(None);
    };
    let rename = snap
        .analysis
        .rename(file, offset, &params.new_name, snap.local_files())?
        .map_err(Failure::Invalid)?;
    let mut changes: HashMap<Url, Vec<TextEdit>> = HashMap::new();
    for t in rename.targets {
        if let Some(location) = snap.location(t.file, t.range) {
            changes
                .entry(location.uri)
                .or_default()
                .push(TextEdit::new(location.range, rename.new_name.clone()));
        }
    }
    Ok(Some(WorkspaceEdit {
        changes: Some(changes),
        ..Default::default()
    }))
}
