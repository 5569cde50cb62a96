//! Completion: what fits at the cursor (parameters, components, types,
//! keywords, attributes, import keys).

use tower_lsp::lsp_types::{CompletionParams, CompletionResponse};

use crate::state::Answer;
use crate::to_proto;
use crate::world::Snapshot;

pub fn completion(snap: &Snapshot, params: CompletionParams) -> Answer<Option<CompletionResponse>> {
    let Some((file, offset)) = snap.at(&params.text_document_position) else {
        return Ok(None);
    };
    let items = snap.analysis.completions(file, offset)?;
    Ok(Some(CompletionResponse::Array(
        items.into_iter().map(to_proto::completion_item).collect(),
    )))
}
