//! The parser's machinery: a cursor over the tokens that skips trivia for
//! lookahead, builds the rowan tree as it goes, and collects errors. The
//! productions live in `grammar`, which uses this; the entry points (a
//! file, a body) are in `lib.rs` and `reparsing.rs`, which use both.
//!
//! Trivia before a node's first token is attached to the parent, not the node,
//! so a comment above a statement belongs to the enclosing body.

use rowan::{GreenNode, GreenToken, NodeOrToken};

use crate::lexer::{Lexer, Token};
use crate::{SyntaxError, SyntaxKind, TextRange, TextSize};

pub(crate) struct Parser<'t> {
    text: &'t str,
    /// Lexing runs as parsing goes, a batch of tokens at a time.
    lexer: Lexer<'t>,
    /// Whether the lexer has more tokens.
    more: bool,
    /// The current batch: the tokens from `pos` on are not taken yet.
    tokens: Vec<Token>,
    /// Index in `tokens` of the next token to bump (trivia included).
    pos: usize,
    /// Where that token starts in the text.
    offset: TextSize,
    /// How many tokens from `pos` on are not trivia. At least `LOOKAHEAD`
    /// unless the lexer has no more.
    significant: usize,
    /// End of the last non-trivia token bumped: where "expected X" points.
    last_end: TextSize,
    builder: TreeBuilder,
    /// Where top-level items go as they are finished, instead of into the
    /// tree (see [`crate::parse_each_item`]).
    sink: Option<&'t mut dyn FnMut(GreenNode, TextSize)>,
    errors: Vec<SyntaxError>,
    /// How many maps are open: bounded so no input can overflow the stack.
    pub(crate) map_depth: u32,
}

impl<'t> Parser<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let mut parser = Parser {
            text,
            lexer: Lexer::new(text),
            more: true,
            // A batch and what is left of the last; less for a short text.
            tokens: Vec::with_capacity((2 * BATCH).min(text.len() / 2 + 2)),
            pos: 0,
            offset: TextSize::from(0),
            significant: 0,
            last_end: TextSize::from(0),
            builder: TreeBuilder::default(),
            sink: None,
            errors: Vec::new(),
            map_depth: 0,
        };
        parser.refill();
        parser
    }

    /// Drops the tokens taken and lexes the next batch after those left.
    fn refill(&mut self) {
        self.tokens.drain(..self.pos);
        self.pos = 0;
        let start = self.tokens.len();
        self.more = self.lexer.lex_into(&mut self.tokens, BATCH);
        self.significant += self.tokens[start..]
            .iter()
            .filter(|t| !t.kind.is_trivia())
            .count();
    }

    /// A parser that hands each top-level item to `sink` as it is finished,
    /// with its offset, and keeps it out of the tree.
    pub(crate) fn streaming(text: &'t str, sink: &'t mut dyn FnMut(GreenNode, TextSize)) -> Self {
        let mut parser = Parser::new(text);
        parser.sink = Some(sink);
        parser
    }

    /// The tree built and the errors found, lexical and syntactic, in the
    /// order of the text, once a production is done.
    pub(crate) fn finish(self) -> (GreenNode, Vec<SyntaxError>) {
        let mut errors = self.lexer.errors;
        errors.extend(self.errors);
        errors.sort_by_key(|e| (e.range.start(), e.range.end()));
        (self.builder.finish(), errors)
    }

    /// Whether every token has been taken.
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.tokens.len()
    }

    /// The kind of the `n`-th non-trivia token ahead (0 is the current one;
    /// `n < LOOKAHEAD`).
    pub(crate) fn nth(&self, n: usize) -> SyntaxKind {
        debug_assert!(
            n < LOOKAHEAD,
            "the grammar looks {LOOKAHEAD} tokens ahead at most"
        );
        self.tokens[self.pos..]
            .iter()
            .filter(|t| !t.kind.is_trivia())
            .nth(n)
            .map_or(SyntaxKind::EOF, |t| t.kind)
    }

    pub(crate) fn current(&self) -> SyntaxKind {
        self.nth(0)
    }

    pub(crate) fn at(&self, kind: SyntaxKind) -> bool {
        self.current() == kind
    }

    /// The text of the current non-trivia token ("" at the end).
    pub(crate) fn current_text(&self) -> &'t str {
        &self.text[self.current_range()]
    }

    /// Where the current non-trivia token is (empty at the end).
    fn current_range(&self) -> TextRange {
        let mut start = self.offset;
        for token in &self.tokens[self.pos..] {
            if !token.kind.is_trivia() {
                return TextRange::at(start, token.len);
            }
            start += token.len;
        }
        TextRange::empty(start)
    }

    /// Attaches pending whitespace and comments to the node open now.
    pub(crate) fn eat_trivia(&mut self) {
        while self.pos < self.tokens.len() && self.tokens[self.pos].kind.is_trivia() {
            self.push_token();
        }
    }

    fn push_token(&mut self) {
        let token = self.tokens[self.pos];
        let range = TextRange::at(self.offset, token.len);
        self.builder.token(token.kind, &self.text[range]);
        self.offset = range.end();
        self.pos += 1;
        if !token.kind.is_trivia() {
            self.last_end = range.end();
            self.significant -= 1;
            if self.significant < LOOKAHEAD && self.more {
                self.refill();
            }
        }
    }

    /// Adds the current token to the open node. Does nothing at the end.
    pub(crate) fn bump(&mut self) {
        self.eat_trivia();
        if self.pos < self.tokens.len() {
            self.push_token();
        }
    }

    /// Bumps the current token if it is `kind`.
    pub(crate) fn eat(&mut self, kind: SyntaxKind) -> bool {
        if self.at(kind) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Bumps `kind` or reports that it is missing, naming what was found.
    pub(crate) fn expect(&mut self, kind: SyntaxKind, context: &str) -> bool {
        if self.eat(kind) {
            return true;
        }
        self.error_expected(&format!("{} {context}", kind.describe()));
        false
    }

    /// "expected X, found Y" at the end of the previous token.
    pub(crate) fn error_expected(&mut self, what: &str) {
        let found = self.found();
        self.error_at(
            TextRange::empty(self.last_end),
            format!("expected {what}, found {found}"),
        );
    }

    /// How the current token reads in a message: "`}`", "the name `x`", ...
    pub(crate) fn found(&self) -> String {
        match self.current() {
            SyntaxKind::IDENT => format!("the name `{}`", self.current_text()),
            SyntaxKind::STRING => format!("the string {}", self.current_text()),
            SyntaxKind::ERROR_TOKEN => format!(
                "`{}`, which is not CVL (names start with a letter; values are quoted strings)",
                self.current_text()
            ),
            other => other.describe().to_string(),
        }
    }

    /// An error about the current token.
    pub(crate) fn error_here(&mut self, message: String) {
        let range = self.current_range();
        self.error_at(range, message);
    }

    /// Records an error unless one was already recorded at the same place:
    /// one mistake should give one message, not a cascade.
    pub(crate) fn error_at(&mut self, range: TextRange, message: String) {
        if let Some(last) = self.errors.last() {
            if last.range.start() == range.start() {
                return;
            }
        }
        self.errors.push(SyntaxError::new(message, range));
    }

    pub(crate) fn start_node(&mut self, kind: SyntaxKind) {
        self.eat_trivia();
        self.builder.start_node(kind);
    }

    pub(crate) fn start_root(&mut self) {
        self.builder.start_node(SyntaxKind::ROOT);
    }

    pub(crate) fn finish_node(&mut self) {
        let top_level = self.builder.parents.len() == 2;
        match &mut self.sink {
            Some(sink) if top_level => {
                let (node, offset) = self.builder.take_node();
                sink(node, offset);
            }
            _ => self.builder.finish_node(),
        }
    }
}

/// How many non-trivia tokens the grammar looks ahead: `nth(0)`, `nth(1)`.
const LOOKAHEAD: usize = 2;
/// Tokens lexed at a time: a batch stays in the cache while it is parsed.
const BATCH: usize = 4096;

/// Builds the green tree bottom-up. Tokens that recur are shared instead of
/// allocated again: punctuation and keywords by kind, whitespace from a small
/// direct-mapped cache (a lookup is one hash of a short text and one
/// comparison; a miss costs only the allocation it would have cost anyway).
/// Names and strings are allocated each time: sharing them (from a map, or
/// from this cache) made each use touch a token allocated far away in memory,
/// and that cache miss cost more than a fresh allocation next to the node
/// being built. rowan's interning `NodeCache`, which hashes every token and
/// node, costs more than it saves on parser output.
struct TreeBuilder {
    children: Vec<NodeOrToken<GreenNode, GreenToken>>,
    /// Open nodes: their kind, where their children start in `children`,
    /// and their offset in the text.
    parents: Vec<(SyntaxKind, usize, TextSize)>,
    /// The end of the text taken so far.
    offset: TextSize,
    /// Tokens whose text is fixed by their kind, by kind.
    fixed: Vec<Option<GreenToken>>,
    /// Short whitespace, by text.
    whitespace: [Option<GreenToken>; WHITESPACE_SLOTS],
}

/// Longest whitespace worth sharing.
const MAX_SHARED_LEN: usize = 32;
/// Slots of the whitespace cache (a power of two; files use a few dozen
/// different runs of whitespace).
const WHITESPACE_SLOTS: usize = 256;

impl Default for TreeBuilder {
    fn default() -> Self {
        TreeBuilder {
            children: Vec::new(),
            parents: Vec::new(),
            offset: TextSize::from(0),
            fixed: Vec::new(),
            whitespace: [const { None }; WHITESPACE_SLOTS],
        }
    }
}

/// The cache slot of a run of whitespace.
fn whitespace_slot(text: &str) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = rustc_hash::FxBuildHasher.build_hasher();
    hasher.write(text.as_bytes());
    // The top bits of a multiplicative hash: one per slot index bit.
    let bits = WHITESPACE_SLOTS.trailing_zeros();
    (hasher.finish().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

impl TreeBuilder {
    fn token(&mut self, kind: SyntaxKind, text: &str) {
        let token = match kind {
            SyntaxKind::IMPORT_KW
            | SyntaxKind::EXTENDS_KW
            | SyntaxKind::VAR_KW
            | SyntaxKind::L_CURLY
            | SyntaxKind::R_CURLY
            | SyntaxKind::SEMICOLON
            | SyntaxKind::COMMA
            | SyntaxKind::EQ
            | SyntaxKind::FAT_ARROW
            | SyntaxKind::DOT => {
                let index = kind as usize;
                if self.fixed.len() <= index {
                    self.fixed.resize(index + 1, None);
                }
                self.fixed[index]
                    .get_or_insert_with(|| GreenToken::new(kind.into(), text))
                    .clone()
            }
            SyntaxKind::WHITESPACE if text.len() <= MAX_SHARED_LEN => {
                let slot = &mut self.whitespace[whitespace_slot(text)];
                match slot {
                    Some(token) if token.text() == text => token.clone(),
                    _ => slot.insert(GreenToken::new(kind.into(), text)).clone(),
                }
            }
            _ => GreenToken::new(kind.into(), text),
        };
        self.offset += TextSize::of(text);
        self.children.push(NodeOrToken::Token(token));
    }

    fn start_node(&mut self, kind: SyntaxKind) {
        self.parents.push((kind, self.children.len(), self.offset));
    }

    fn finish_node(&mut self) {
        let (node, _) = self.take_node();
        self.children.push(NodeOrToken::Node(node));
    }

    /// Finishes the open node and returns it with its offset, without
    /// adding it to its parent.
    fn take_node(&mut self) -> (GreenNode, TextSize) {
        let (kind, first, offset) = self.parents.pop().expect("a node is open");
        let node = GreenNode::new(kind.into(), self.children.drain(first..));
        (node, offset)
    }

    fn finish(mut self) -> GreenNode {
        assert!(self.parents.is_empty(), "every node is finished");
        match self.children.pop() {
            Some(NodeOrToken::Node(root)) if self.children.is_empty() => root,
            _ => unreachable!("the root is the only child left"),
        }
    }
}
