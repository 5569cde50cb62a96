//! Hover: what the name under the cursor denotes, its declaration and final
//! values, in markdown; on a deployed object's name, its plan too. In a
//! test parameters file, a name's hover is that of the member it names.

use tower_lsp::lsp_types::{Hover, HoverParams};

use crate::state::Answer;
use crate::to_proto;
use crate::world::Snapshot;

pub fn hover(snap: &Snapshot, params: HoverParams) -> Answer<Option<Hover>> {
    let position = &params.text_document_position_params;
    if let Some(doc) = snap.params.get(&position.text_document.uri) {
        let Some((deployment, file)) = &doc.analysed else {
            return Ok(None);
        };
        let offset = doc.index.offset(position.position);
        let Some(at) = deployment.name_offset(&doc.parsed, offset) else {
            return Ok(None);
        };
        let answer = snap.analysis.hover(*file, at)?;
        return Ok(answer.and_then(|(range, text)| {
            let range = deployment.range_in_file(&doc.parsed, range)?;
            Some(to_proto::hover(&doc.index, (range, text)))
        }));
    }
    let Some((file, offset)) = snap.at(&params.text_document_position_params) else {
        return Ok(None);
    };
    let index = snap.line_index(file);
    let mut answer = snap.analysis.hover(file, offset)?;
    // A deployed object's name: what applying it would do, in order.
    if let Some(plan) = super::plan::hover_text(snap, file, offset)? {
        if let Some((_, text)) = answer.as_mut() {
            text.push_str("\n\n---\n\n");
            text.push_str(&plan);
        }
    }
    Ok(answer.map(|answer| to_proto::hover(&index, answer)))
}
