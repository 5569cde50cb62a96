//! Byte offsets ↔ LSP positions (line, UTF-16 column), correct on non-ASCII
//! lines and CRLF files.

use cvl_syntax::{TextRange, TextSize};
use tower_lsp::lsp_types::{Position, Range};

pub struct LineIndex {
    /// Byte offset of each line's start.
    starts: Vec<usize>,
    text: String,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            starts,
            text: text.to_string(),
        }
    }

    pub fn position(&self, offset: TextSize) -> Position {
        let offset = (u32::from(offset) as usize).min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let prefix = self.text.get(start..offset).unwrap_or("");
        let column: usize = prefix.chars().map(char::len_utf16).sum();
        Position::new(line as u32, column as u32)
    }

    pub fn range(&self, range: TextRange) -> Range {
        Range::new(self.position(range.start()), self.position(range.end()))
    }

    /// The byte offset of a position; positions past a line's end clamp to it.
    pub fn offset(&self, position: Position) -> TextSize {
        let line = (position.line as usize).min(self.starts.len() - 1);
        let start = self.starts[line];
        let end = self
            .starts
            .get(line + 1)
            .copied()
            .unwrap_or(self.text.len());
        let mut units = 0usize;
        let mut offset = start;
        for c in self.text[start..end].chars() {
            if units >= position.character as usize || c == '\n' || c == '\r' {
                break;
            }
            units += c.len_utf16();
            offset += c.len_utf8();
        }
        TextSize::from(offset as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_columns_and_crlf() {
        let text = "a = \"é🙂\";\r\nb = c;\n";
        let index = LineIndex::new(text);
        // `;` after the string: bytes 4 + 1 + 2 + 4 + 1 = 12; UTF-16: 4+1+1+2+1 = 9.
        assert_eq!(index.position(TextSize::from(12)), Position::new(0, 9));
        assert_eq!(index.offset(Position::new(0, 9)), TextSize::from(12));
        let b = text.find('b').unwrap() as u32;
        assert_eq!(index.position(TextSize::from(b)), Position::new(1, 0));
        assert_eq!(index.offset(Position::new(1, 0)), TextSize::from(b));
        // Past the end of line 0 clamps before the CR.
        assert_eq!(index.offset(Position::new(0, 99)), TextSize::from(13));
    }
}
