//! Incremental reparsing, as rust-analyzer's `reparsing.rs` does it for
//! blocks: an edit strictly inside one object's body parses that body again
//! alone and splices the new node into the old tree, sharing every other
//! node; when that could differ from a full parse, it declines.

use crate::{grammar, parser, GreenNode, Parse, SyntaxError, SyntaxKind, TextRange, TextSize};

/// One change to a text: `delete` is replaced by `insert` (an editor's
/// incremental change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEdit {
    pub delete: TextRange,
    pub insert: String,
}

impl TextEdit {
    /// The text after the edit; `None` when `delete` is not inside `text`
    /// on character boundaries (an edit meant for another text).
    pub fn apply(&self, text: &str) -> Option<String> {
        let (start, end) = (
            usize::from(self.delete.start()),
            usize::from(self.delete.end()),
        );
        if end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return None;
        }
        let mut out = text.to_string();
        out.replace_range(start..end, &self.insert);
        Some(out)
    }
}

impl Parse {
    /// The parse of the text after `edit`, built by parsing again only the
    /// object body the edit falls in (between its braces) and sharing every
    /// other node with this tree; `None` when that is not sound (the edit
    /// touches a brace or leaves the body, the braces no longer balance, the
    /// body would end elsewhere), and the caller parses the new text in
    /// full. Equal to a full parse whenever it answers (a property test
    /// checks this on random files and edits).
    pub fn reparse(&self, edit: &TextEdit) -> Option<Parse> {
        let root = self.syntax();
        if edit.delete.end() > root.text_range().end() {
            return None;
        }
        let body = match root.covering_element(edit.delete) {
            rowan::NodeOrToken::Node(n) => n,
            rowan::NodeOrToken::Token(t) => t.parent()?,
        }
        .ancestors()
        .find(|n| n.kind() == SyntaxKind::BODY)?;
        let range = body.text_range();
        // The old body must have closed on its own `}` too: else its errors
        // may sit at its end, where they cannot be told from what follows.
        let closed = body
            .last_child_or_token()
            .is_some_and(|last| last.kind() == SyntaxKind::R_CURLY);
        if !(closed && range.start() < edit.delete.start() && edit.delete.end() < range.end()) {
            return None;
        }
        let local = TextEdit {
            delete: edit.delete - range.start(),
            insert: edit.insert.clone(),
        };
        let text = local.apply(&body.text().to_string())?;
        let (green, inside) = parse_body(&text)?;
        // Errors of the old body lie strictly between its braces; those of
        // the object (at `{` itself, or before) and of what follows do not.
        let grow = TextSize::of(edit.insert.as_str());
        let shrink = edit.delete.len();
        let mut errors: Vec<SyntaxError> = Vec::with_capacity(self.errors.len());
        errors.extend(
            self.errors
                .iter()
                .filter(|e| e.range.start() <= range.start())
                .cloned(),
        );
        errors.extend(inside.into_iter().map(|mut e| {
            e.range += range.start();
            e
        }));
        errors.extend(
            self.errors
                .iter()
                .filter(|e| e.range.start() >= range.end())
                .map(|e| {
                    let mut e = e.clone();
                    e.range = TextRange::new(
                        e.range.start() + grow - shrink,
                        e.range.end() + grow - shrink,
                    );
                    e
                }),
        );
        errors.sort_by_key(|e| (e.range.start(), e.range.end()));
        Some(Parse {
            green: body.replace_with(green),
            errors,
        })
    }
}

/// Parses one object body, `{` to `}`, alone, with its errors (lexical and
/// syntactic). `None` unless the body production took every token of `text`
/// and closed on a `}` of its own, which is then the last token, as `{` is
/// the first; then (the grammar looks at most one token ahead) a parse of
/// the whole file builds this same node here.
fn parse_body(text: &str) -> Option<(GreenNode, Vec<SyntaxError>)> {
    if !text.starts_with('{') {
        return None;
    }
    let mut parser = parser::Parser::new(text);
    grammar::body(&mut parser);
    if !parser.at_end() {
        return None;
    }
    let (body, errors) = parser.finish();
    let closed_by_body = matches!(
        body.children().last(),
        Some(rowan::NodeOrToken::Token(t)) if t.kind() == SyntaxKind::R_CURLY.into()
    );
    (body.kind() == SyntaxKind::BODY.into() && closed_by_body).then_some((body, errors))
}
