//! Inlay hints: each assignment's final value in the object, after its name;
//! and in a deployed object, what applying it would do to each component
//! (`handlers::plan`).

use tower_lsp::lsp_types::{InlayHint, InlayHintParams, InlayHintTooltip};

use crate::state::Answer;
use crate::to_proto;
use crate::world::Snapshot;

pub fn inlay_hint(snap: &Snapshot, params: InlayHintParams) -> Answer<Option<Vec<InlayHint>>> {
    let Some((file, index)) = snap.document(&params.text_document.uri) else {
        return Ok(None);
    };
    let mut hints: Vec<InlayHint> = snap
        .analysis
        .inlay_hints(file)?
        .into_iter()
        .map(|h| to_proto::inlay_hint(&index, h))
        .collect();
    for (at, text) in super::plan::hints(snap, file)? {
        let mut hint = to_proto::inlay_hint(&index, (at, text));
        hint.padding_left = Some(true);
        hint.tooltip = Some(InlayHintTooltip::String(
            "what applying this deployment would do, against the utility's state (plan preview)"
                .into(),
        ));
        hints.push(hint);
    }
    hints.sort_by_key(|h| (h.position.line, h.position.character));
    Ok(Some(hints))
}
