//! Go to definition, find references and highlight a name's occurrences in
//! the document.

use tower_lsp::lsp_types::{
    DocumentHighlight, DocumentHighlightParams, GotoDefinitionParams, GotoDefinitionResponse,
    Location, ReferenceParams,
};

use crate::state::Answer;
use crate::world::Snapshot;

pub fn goto_definition(
    snap: &Snapshot,
    params: GotoDefinitionParams,
) -> Answer<Option<GotoDefinitionResponse>> {
    let Some((file, offset)) = snap.at(&params.text_document_position_params) else {
        return Ok(None);
    };
    Ok(snap
        .analysis
        .goto_definition(file, offset)?
        .and_then(|t| snap.location(t.file, t.range))
        .map(GotoDefinitionResponse::Scalar))
}

pub fn references(snap: &Snapshot, params: ReferenceParams) -> Answer<Option<Vec<Location>>> {
    let Some((file, offset)) = snap.at(&params.text_document_position) else {
        return Ok(None);
    };
    let refs = snap.analysis.references(file, offset, snap.local_files())?;
    Ok(Some(
        refs.into_iter()
            .filter_map(|t| snap.location(t.file, t.range))
            .collect(),
    ))
}

pub fn document_highlight(
    snap: &Snapshot,
    params: DocumentHighlightParams,
) -> Answer<Option<Vec<DocumentHighlight>>> {
    let Some((file, offset)) = snap.at(&params.text_document_position_params) else {
        return Ok(None);
    };
    let index = snap.line_index(file);
    Ok(Some(
        snap.analysis
            .references(file, offset, &[file])?
            .into_iter()
            .filter(|t| t.file == file)
            .map(|t| DocumentHighlight {
                range: index.range(t.range),
                kind: None,
            })
            .collect(),
    ))
}
