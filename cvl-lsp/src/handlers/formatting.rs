//! Formatting the whole document as `cvl fmt` does; a document with syntax
//! errors is left as it is.

use cvl_syntax::{TextRange, TextSize};
use tower_lsp::lsp_types::{DocumentFormattingParams, TextEdit};

use crate::state::Answer;
use crate::world::Snapshot;

pub fn formatting(
    snap: &Snapshot,
    params: DocumentFormattingParams,
) -> Answer<Option<Vec<TextEdit>>> {
    let Some(file) = snap.file_of(&params.text_document.uri) else {
        return Ok(None);
    };
    let Some(formatted) = snap.analysis.format(file) else {
        return Ok(None);
    };
    let text = snap.analysis.file_text(file);
    if formatted == text {
        return Ok(Some(Vec::new()));
    }
    let whole = snap
        .line_index(file)
        .range(TextRange::up_to(TextSize::of(text)));
    Ok(Some(vec![TextEdit::new(whole, formatted)]))
}
