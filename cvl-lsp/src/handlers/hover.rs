//! Hover: what the name under the cursor denotes, its declaration and final
//! values, in markdown.

use tower_lsp::lsp_types::{Hover, HoverParams};

use crate::state::Answer;
use crate::to_proto;
use crate::world::Snapshot;

pub fn hover(snap: &Snapshot, params: HoverParams) -> Answer<Option<Hover>> {
    let Some((file, offset)) = snap.at(&params.text_document_position_params) else {
        return Ok(None);
    };
    let index = snap.line_index(file);
    Ok(snap
        .analysis
        .hover(file, offset)?
        .map(|answer| to_proto::hover(&index, answer)))
}
