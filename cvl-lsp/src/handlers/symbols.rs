//! The document's outline and the workspace's objects by name.

use tower_lsp::lsp_types::{
    DocumentSymbolParams, DocumentSymbolResponse, SymbolInformation, WorkspaceSymbolParams,
};

use crate::state::Answer;
use crate::to_proto;
use crate::world::Snapshot;

pub fn document_symbol(
    snap: &Snapshot,
    params: DocumentSymbolParams,
) -> Answer<Option<DocumentSymbolResponse>> {
    let Some((file, index)) = snap.document(&params.text_document.uri) else {
        return Ok(None);
    };
    let symbols = snap.analysis.document_symbols(file)?;
    Ok(Some(DocumentSymbolResponse::Nested(
        symbols
            .into_iter()
            .map(|s| to_proto::document_symbol(s, &index))
            .collect(),
    )))
}

pub fn workspace_symbol(
    snap: &Snapshot,
    params: WorkspaceSymbolParams,
) -> Answer<Option<Vec<SymbolInformation>>> {
    let found = snap
        .analysis
        .workspace_symbols(&params.query, snap.local_files())?;
    Ok(Some(
        found
            .into_iter()
            .filter_map(|s| {
                let location = snap.location(s.target.file, s.target.range)?;
                Some(to_proto::workspace_symbol(s.name, location))
            })
            .collect(),
    ))
}
