//! Go to definition, find references and highlight a name's occurrences in
//! the document. From a test parameters file's name, definition goes to
//! the declaration in the appliance.

use tower_lsp::lsp_types::{
    DocumentHighlight, DocumentHighlightParams, GotoDefinitionParams, GotoDefinitionResponse,
    Location, ReferenceParams, Url,
};

use crate::state::Answer;
use crate::world::Snapshot;

pub fn goto_definition(
    snap: &Snapshot,
    params: GotoDefinitionParams,
) -> Answer<Option<GotoDefinitionResponse>> {
    let position = &params.text_document_position_params;
    if let Some(doc) = snap.params.get(&position.text_document.uri) {
        let (Some((deployment, file)), Some(appliance)) = (&doc.analysed, &doc.appliance) else {
            return Ok(None);
        };
        let offset = doc.index.offset(position.position);
        let Some(at) = deployment.name_offset(&doc.parsed, offset) else {
            return Ok(None);
        };
        let Some(target) = snap.analysis.goto_definition(*file, at)? else {
            return Ok(None);
        };
        // In the appliance's text (which starts the deployment's, the same
        // offsets), or in another file.
        let location = if target.file == *file && deployment.in_appliance(target.range) {
            let index = crate::line_index::LineIndex::new(&deployment.text);
            Url::from_file_path(appliance)
                .ok()
                .map(|uri| Location::new(uri, index.range(target.range)))
        } else {
            snap.location(target.file, target.range)
        };
        return Ok(location.map(GotoDefinitionResponse::Scalar));
    }
    let Some((file, offset)) = snap.at(position) else {
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
