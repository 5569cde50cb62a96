//! Folding ranges: object bodies, lists, maps and long comments.

use tower_lsp::lsp_types::{FoldingRange, FoldingRangeParams};

use crate::state::Answer;
use crate::to_proto;
use crate::world::Snapshot;

pub fn folding_range(
    snap: &Snapshot,
    params: FoldingRangeParams,
) -> Answer<Option<Vec<FoldingRange>>> {
    let Some((file, index)) = snap.document(&params.text_document.uri) else {
        return Ok(None);
    };
    let ranges = snap.analysis.folding_ranges(file)?;
    Ok(Some(
        ranges
            .into_iter()
            .map(|r| to_proto::folding_range(&index, r))
            .collect(),
    ))
}
