//! Inlay hints: each assignment's final value in the object, after its name.

use tower_lsp::lsp_types::{InlayHint, InlayHintParams};

use crate::state::Answer;
use crate::to_proto;
use crate::world::Snapshot;

pub fn inlay_hint(snap: &Snapshot, params: InlayHintParams) -> Answer<Option<Vec<InlayHint>>> {
    let Some((file, index)) = snap.document(&params.text_document.uri) else {
        return Ok(None);
    };
    let hints = snap.analysis.inlay_hints(file)?;
    Ok(Some(
        hints
            .into_iter()
            .map(|h| to_proto::inlay_hint(&index, h))
            .collect(),
    ))
}
