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
mod reparsing;
pub mod soup;
mod syntax_kind;

use std::fmt;

pub use reparsing::TextEdit;
pub use rowan::{NodeOrToken, TextRange, TextSize};
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

/// A green node's children, each with its offset in the file, given the
/// node's own (rowan keeps them but does not hand them out): what the
/// formatter and the analysis's lowering walk instead of the red tree.
pub fn green_children(
    node: &GreenNodeData,
    offset: TextSize,
) -> impl Iterator<
    Item = (
        rowan::NodeOrToken<&GreenNodeData, &rowan::GreenTokenData>,
        TextSize,
    ),
> {
    let mut at = offset;
    node.children().map(move |child| {
        let start = at;
        at += child.text_len();
        (child, start)
    })
}

/// [`green_children`] without the trivia (whitespace, comments).
pub fn significant_green_children(
    node: &GreenNodeData,
    offset: TextSize,
) -> impl Iterator<
    Item = (
        rowan::NodeOrToken<&GreenNodeData, &rowan::GreenTokenData>,
        TextSize,
    ),
> {
    green_children(node, offset).filter(|(child, _)| !kind_from_raw(child.kind()).is_trivia())
}

/// The CVL kind of a green node or token (`GreenNodeData::kind`).
pub fn kind_from_raw(raw: rowan::SyntaxKind) -> SyntaxKind {
    <CvlLanguage as rowan::Language>::kind_from_raw(raw)
}

pub type SyntaxNode = rowan::SyntaxNode<CvlLanguage>;
pub type SyntaxToken = rowan::SyntaxToken<CvlLanguage>;
pub type SyntaxElement = rowan::SyntaxElement<CvlLanguage>;
pub type GreenNode = rowan::GreenNode;
pub type GreenNodeData = rowan::GreenNodeData;

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
pub fn parse(text: &str) -> Parse {
    let mut parser = parser::Parser::new(text);
    grammar::source_file(&mut parser);
    let (green, errors) = parser.finish();
    Parse { green, errors }
}

/// Parses a whole CVL file as [`parse`] does, but hands each top-level item
/// (import, object, assignment, or the error node of a stray token) to
/// `each` as soon as it is parsed, with its offset, and builds no tree of
/// the whole file: what a one-shot check needs, holding one item's tree at a
/// time instead of the file's. Returns the syntax errors, as `parse` would.
pub fn parse_each_item(text: &str, mut each: impl FnMut(GreenNode, TextSize)) -> Vec<SyntaxError> {
    let mut parser = parser::Parser::streaming(text, &mut each);
    grammar::source_file(&mut parser);
    let (_, errors) = parser.finish();
    errors
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
