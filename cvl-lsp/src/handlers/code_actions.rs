//! Code actions: the quick fixes of the diagnostics in the requested range.

use cvl_syntax::TextRange;
use tower_lsp::lsp_types::{CodeActionOrCommand, CodeActionParams, CodeActionResponse};

use crate::state::Answer;
use crate::to_proto;
use crate::world::Snapshot;

pub fn code_action(
    snap: &Snapshot,
    params: CodeActionParams,
) -> Answer<Option<CodeActionResponse>> {
    let uri = &params.text_document.uri;
    let Some((file, index)) = snap.document(uri) else {
        return Ok(None);
    };
    let (start, end) = (
        index.offset(params.range.start),
        index.offset(params.range.end),
    );
    let wanted = TextRange::new(start.min(end), start.max(end));
    let fixes = snap.analysis.code_actions(file, wanted)?;
    Ok(Some(
        fixes
            .into_iter()
            .map(|fix| CodeActionOrCommand::CodeAction(to_proto::code_action(uri, &index, fix)))
            .collect(),
    ))
}
