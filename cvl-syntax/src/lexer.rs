//! Turns text into tokens. Never stops early: every byte lands in some token,
//! and malformed tokens (unterminated strings or comments, bad escapes, stray
//! bytes) come with an error instead of ending the scan.

use logos::Logos;

use crate::{SyntaxError, SyntaxKind, TextRange, TextSize};

/// One token: its kind and its length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: SyntaxKind,
    pub len: TextSize,
}

/// The tokens of `text`, covering it exactly, and the lexical errors.
pub fn lex(text: &str) -> (Vec<Token>, Vec<SyntaxError>) {
    // About one token per three bytes in real files: room for one per two,
    // so that a large file's tokens are never copied to grow (pages of the
    // capacity left unused are never touched).
    let mut tokens = Vec::with_capacity(text.len() / 2 + 1);
    let mut lexer = Lexer::new(text);
    lexer.lex_into(&mut tokens, usize::MAX);
    (tokens, lexer.errors)
}

/// Lexes a text a batch of tokens at a time: what the parser reads, so
/// that a file's tokens (3.5 million for 10 MB) are never all held at once.
pub(crate) struct Lexer<'t> {
    lexer: logos::Lexer<'t, SyntaxKind>,
    pub(crate) errors: Vec<SyntaxError>,
}

impl<'t> Lexer<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Lexer {
            lexer: SyntaxKind::lexer(text),
            errors: Vec::new(),
        }
    }

    /// Appends up to about `n` more tokens to `out`; returns whether the
    /// text holds more. A run of invalid characters is glued into one
    /// `ERROR_TOKEN`, also across calls when that token is still last in
    /// `out`.
    pub(crate) fn lex_into(&mut self, out: &mut Vec<Token>, n: usize) -> bool {
        let mut taken = 0;
        while taken < n {
            let Some(result) = self.lexer.next() else {
                return false;
            };
            let span = self.lexer.span();
            let len = TextSize::from((span.end - span.start) as u32);
            match result {
                Ok(kind) => {
                    if let Some(message) = validate(kind, self.lexer.slice()) {
                        let range = TextRange::at(TextSize::from(span.start as u32), len);
                        self.errors.push(SyntaxError::new(message, range));
                    }
                    out.push(Token { kind, len });
                    taken += 1;
                }
                Err(()) => match out.last_mut() {
                    Some(last) if last.kind == SyntaxKind::ERROR_TOKEN => last.len += len,
                    _ => {
                        out.push(Token {
                            kind: SyntaxKind::ERROR_TOKEN,
                            len,
                        });
                        taken += 1;
                    }
                },
            }
        }
        true
    }
}

/// Checks the inside of a token whose start matched: closing delimiters and
/// string escapes.
fn validate(kind: SyntaxKind, text: &str) -> Option<String> {
    match kind {
        SyntaxKind::BLOCK_COMMENT if text.len() < 4 || !text.ends_with("*/") => Some(
            "unterminated block comment: add `*/` to close it (block comments do not nest)"
                .to_string(),
        ),
        SyntaxKind::STRING => validate_string(text),
        _ => None,
    }
}

fn validate_string(text: &str) -> Option<String> {
    let mut chars = text[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => match chars.next() {
                Some('"' | '\\' | 'n' | 't' | 'r') => {}
                Some(other) => {
                    return Some(format!(
                        "unknown escape `\\{}` in string: the escapes are \\\" \\\\ \\n \\t \\r",
                        other.escape_debug()
                    ))
                }
                None => break,
            },
            _ => {}
        }
    }
    Some(
        "unterminated string: add a closing `\"` before the end of the line (use \\n for a newline)"
            .to_string(),
    )
}

/// The value a string token denotes: quotes removed, escapes decoded. Bad
/// escapes are kept as written (they were already reported).
pub fn unescape_string(text: &str) -> String {
    let inner = text.strip_prefix('"').unwrap_or(text);
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(SyntaxKind, usize)> {
        lex(text)
            .0
            .iter()
            .map(|t| (t.kind, u32::from(t.len) as usize))
            .collect()
    }

    #[test]
    fn every_byte_is_covered() {
        for text in [
            "a = \"x", "/* open", "1 é €", "\"a\\q\"", "x=>y", "\"a\r\nb",
        ] {
            let (tokens, _) = lex(text);
            let total: u32 = tokens.iter().map(|t| u32::from(t.len)).sum();
            assert_eq!(total as usize, text.len(), "{text:?}");
        }
    }

    #[test]
    fn keywords_and_punctuation() {
        use SyntaxKind::*;
        assert_eq!(
            kinds("import{}=>=;,.var extends importer"),
            vec![
                (IMPORT_KW, 6),
                (L_CURLY, 1),
                (R_CURLY, 1),
                (FAT_ARROW, 2),
                (EQ, 1),
                (SEMICOLON, 1),
                (COMMA, 1),
                (DOT, 1),
                (VAR_KW, 3),
                (WHITESPACE, 1),
                (EXTENDS_KW, 7),
                (WHITESPACE, 1),
                (IDENT, 8),
            ]
        );
    }

    #[test]
    fn malformed_tokens_are_reported() {
        let (_, errors) = lex("a = \"open\nb = \"x\\q\";\n/* never closed");
        let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].starts_with("unterminated string"));
        assert!(messages[1].starts_with("unknown escape `\\q`"));
        assert!(messages[2].starts_with("unterminated block comment"));
    }

    #[test]
    fn unterminated_string_stops_at_line_end() {
        use SyntaxKind::*;
        let k = kinds("\"ab\r\nc");
        assert_eq!(k, vec![(STRING, 3), (WHITESPACE, 2), (IDENT, 1)]);
    }

    #[test]
    fn digits_and_unicode_are_error_tokens() {
        use SyntaxKind::*;
        assert_eq!(kinds("1é"), vec![(ERROR_TOKEN, 3)]);
    }

    #[test]
    fn unescape() {
        assert_eq!(unescape_string(r#""a\"b\\c\nd""#), "a\"b\\c\nd");
    }
}
