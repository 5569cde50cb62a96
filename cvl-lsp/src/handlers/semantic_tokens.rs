//! Semantic tokens of the whole document: keywords, strings, comments,
//! types, parameters, components, operators.

use tower_lsp::lsp_types::{SemanticTokensParams, SemanticTokensResult};

use crate::state::Answer;
use crate::to_proto;
use crate::world::Snapshot;

pub fn semantic_tokens_full(
    snap: &Snapshot,
    params: SemanticTokensParams,
) -> Answer<Option<SemanticTokensResult>> {
    let Some((file, index)) = snap.document(&params.text_document.uri) else {
        return Ok(None);
    };
    let highlights = snap.analysis.highlights(file)?;
    let text = snap.analysis.file_text(file);
    Ok(Some(SemanticTokensResult::Tokens(
        to_proto::semantic_tokens(text, &index, highlights),
    )))
}
