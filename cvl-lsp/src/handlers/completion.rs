//! Completion: what fits at the cursor (parameters, components, types,
//! keywords, attributes, import keys). In a test parameters file, a name's
//! completion is that of the appliance's member it names (`ethernet0.`
//! offers the interface's parameters).

use cvl_analysis::ide::CompletionKind;
use tower_lsp::lsp_types::{CompletionParams, CompletionResponse};

use crate::state::Answer;
use crate::to_proto;
use crate::world::Snapshot;

pub fn completion(snap: &Snapshot, params: CompletionParams) -> Answer<Option<CompletionResponse>> {
    let position = &params.text_document_position;
    if let Some(doc) = snap.params.get(&position.text_document.uri) {
        let Some((deployment, file)) = &doc.analysed else {
            return Ok(None);
        };
        let offset = doc.index.offset(position.position);
        let Some(at) = deployment.offset_of(&doc.parsed, &doc.text, offset) else {
            return Ok(None);
        };
        let items = snap.analysis.completions(*file, at)?;
        return Ok(Some(CompletionResponse::Array(
            items
                .into_iter()
                .filter(|c| {
                    matches!(
                        c.kind,
                        CompletionKind::Parameter | CompletionKind::Component
                    )
                })
                .map(to_proto::completion_item)
                .collect(),
        )));
    }
    let Some((file, offset)) = snap.at(position) else {
        return Ok(None);
    };
    let items = snap.analysis.completions(file, offset)?;
    Ok(Some(CompletionResponse::Array(
        items.into_iter().map(to_proto::completion_item).collect(),
    )))
}
