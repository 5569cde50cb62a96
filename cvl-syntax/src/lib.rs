//! The CVL syntax layer: text in, a lossless rowan tree and a list of errors
//! out.
//!
//! This crate knows nothing of files, salsa, LSP or the network. Parsing never
//! fails: [`parse`] always returns a tree whose text equals its input, and the
//! errors found on the way. The typed [`ast`] is a view over that tree, and
//! [`format`] prints a tree back in the canonical style.

pub mod ast;
pub mod format;
mod grammar;
pub mod lexer;
mod parser;
pub mod soup;
mod syntax_kind;

use std::fmt;

pub use rowan::{TextRange, TextSize};
pub use syntax_kind::SyntaxKind;

/// The rowan language of CVL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CvlLanguage {}

impl rowan::Language for CvlLanguage {
    type Kind = SyntaxKind;

    fn kind_from_raw(raw: rowan::SyntaxKind) -> SyntaxKind {
        assert!(
            raw.0 <= SyntaxKind::ROOT as u16,
            "not a CVL kind: {}",
            raw.0
        );
        // SAFETY: SyntaxKind is repr(u16) with contiguous discriminants from 0
        // to ROOT, and the assertion above keeps `raw` in that range.
        unsafe { std::mem::transmute::<u16, SyntaxKind>(raw.0) }
    }

    fn kind_to_raw(kind: SyntaxKind) -> rowan::SyntaxKind {
        kind.into()
    }
}

pub type SyntaxNode = rowan::SyntaxNode<CvlLanguage>;
pub type SyntaxToken = rowan::SyntaxToken<CvlLanguage>;
pub type SyntaxElement = rowan::SyntaxElement<CvlLanguage>;
pub type GreenNode = rowan::GreenNode;

/// A syntax error: a message and the byte range it is about. Every syntax
/// error has the diagnostic code `syntax-error`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyntaxError {
    pub message: String,
    pub range: TextRange,
}

impl SyntaxError {
    pub const CODE: &'static str = "syntax-error";

    pub fn new(message: impl Into<String>, range: TextRange) -> Self {
        Self {
            message: message.into(),
            range,
        }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:?}", self.message, self.range)
    }
}

/// The result of parsing one text: the green tree and the errors, sorted by
/// position. Cheap to clone (the tree is reference counted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Parse {
    green: GreenNode,
    errors: Vec<SyntaxError>,
}

impl Parse {
    pub fn green(&self) -> &GreenNode {
        &self.green
    }

    pub fn syntax(&self) -> SyntaxNode {
        SyntaxNode::new_root(self.green.clone())
    }

    pub fn tree(&self) -> ast::SourceFile {
        <ast::SourceFile as ast::AstNode>::cast(self.syntax())
            .expect("the parser always builds a ROOT")
    }

    pub fn errors(&self) -> &[SyntaxError] {
        &self.errors
    }

    /// The tree printed one node or token per line, indented, with the errors
    /// after it: the format of `cvl parse` and of the parser's snapshots.
    pub fn debug_dump(&self) -> String {
        let mut out = String::new();
        dump_node(&self.syntax(), 0, &mut out);
        for error in &self.errors {
            out.push_str(&format!(
                "error {}..{}: {}\n",
                u32::from(error.range.start()),
                u32::from(error.range.end()),
                error.message
            ));
        }
        out
    }
}

fn dump_node(node: &SyntaxNode, depth: usize, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "{:indent$}{:?}@{:?}",
        "",
        node.kind(),
        node.text_range(),
        indent = depth * 2
    );
    for child in node.children_with_tokens() {
        match child {
            rowan::NodeOrToken::Node(n) => dump_node(&n, depth + 1, out),
            rowan::NodeOrToken::Token(t) => {
                let _ = writeln!(
                    out,
                    "{:indent$}{:?}@{:?} {:?}",
                    "",
                    t.kind(),
                    t.text_range(),
                    t.text(),
                    indent = (depth + 1) * 2
                );
            }
        }
    }
}

/// Parses a whole CVL file. Never fails and never loses a byte:
/// `parse(t).syntax().to_string() == t` for every `t`.
/// One change to a text: `delete` is replaced by `insert` (an editor's
/// incremental change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEdit {
    pub delete: TextRange,
    pub insert: String,
}

impl TextEdit {
    /// The text after the edit. Panics if `delete` is not inside `text` on
    /// character boundaries.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        out.replace_range(
            usize::from(self.delete.start())..usize::from(self.delete.end()),
            &self.insert,
        );
        out
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
        let text = local.apply(&body.text().to_string());
        let (tokens, lex_errors) = lexer::lex(&text);
        let (green, parse_errors) = parser::Parser::new(&text, &tokens).parse_body()?;
        let mut inside: Vec<SyntaxError> = lex_errors.into_iter().chain(parse_errors).collect();
        inside.sort_by_key(|e| (e.range.start(), e.range.end()));
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

pub fn parse(text: &str) -> Parse {
    let (tokens, mut errors) = lexer::lex(text);
    let (green, parse_errors) = parser::Parser::new(text, &tokens).parse_file();
    errors.extend(parse_errors);
    errors.sort_by_key(|e| (e.range.start(), e.range.end()));
    Parse { green, errors }
}

/// A byte offset's 1-based line and column (in characters), for messages.
pub fn line_col(text: &str, offset: TextSize) -> (usize, usize) {
    let offset = (u32::from(offset) as usize).min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Converts file bytes to text, or says where the first invalid UTF-8 byte is
/// (1-based line and column) so the caller can name it.
pub fn decode_utf8(bytes: &[u8]) -> Result<&str, InvalidUtf8> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        // The valid prefix is UTF-8, so line_col can read it.
        let prefix = std::str::from_utf8(valid).unwrap_or_default();
        let (line, column) = line_col(prefix, TextSize::from(prefix.len() as u32));
        InvalidUtf8 {
            line,
            column,
            byte_offset: e.valid_up_to(),
        }
    })
}

/// Where a file stops being UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8 {
    pub line: usize,
    pub column: usize,
    pub byte_offset: usize,
}

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid UTF-8 at line {}, column {} (byte {}): CVL files must be UTF-8; \
             re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
            self.line, self.column, self.byte_offset
        )
    }
}
