//! The formatter: prints a syntax tree in the canonical CVL style.
//!
//! It walks every token of the tree in order, so it cannot drop one; layout is
//! decided per construct (a value list or map stays on one line when it fits
//! and holds no comment, else it breaks, aligned as in the paper's figures).
//! Comments are printed before the token they precede, on their own line when
//! they were on their own line. It refuses trees with syntax errors, and must
//! never change the sequence of non-trivia tokens.

use rowan::{GreenNodeData, GreenTokenData, Language, NodeOrToken, TextRange, TextSize};

use crate::{CvlLanguage, Parse, SyntaxError, SyntaxKind, SyntaxKind::*, SyntaxNode, SyntaxToken};

/// Layout settings. The defaults are the canonical style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatOptions {
    /// Spaces per nesting level.
    pub indent_width: usize,
    /// Lines longer than this are broken where the grammar allows.
    pub max_width: usize,
}

impl Default for FormatOptions {
    fn default() -> Self {
        Self {
            indent_width: 2,
            max_width: 100,
        }
    }
}

/// Formats `text`, or returns its syntax errors: a file that does not parse is
/// never reformatted.
pub fn format_text(text: &str, options: FormatOptions) -> Result<String, Vec<SyntaxError>> {
    format_parse(&crate::parse(text), options)
}

/// Formats an already parsed file.
pub fn format_parse(parse: &Parse, options: FormatOptions) -> Result<String, Vec<SyntaxError>> {
    if !parse.errors().is_empty() {
        return Err(parse.errors().to_vec());
    }
    let root = parse.syntax();
    let green = parse.green();
    let mut printer = Printer::new(options, Comments::of(green), root.clone());
    // About the input's size: room for it and a little growth, so that the
    // output of a large file is never copied to grow.
    let len = usize::from(green.text_len());
    printer.out.reserve(len + len / 8 + 1);
    printer.statements(green, TextSize::from(0));
    printer.trailing_comments(&root);
    let mut out = printer.out;
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

/// What separates the next piece of output from the last, merged by `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sep {
    None,
    Space,
    Newline,
    BlankLine,
}

/// A comment and where it stood in the source.
struct Comment {
    text: String,
    is_line: bool,
    /// A line break stood between it and what came before.
    own_line: bool,
    /// An empty line stood before it.
    blank_before: bool,
    /// A line break (or the end of the file) stood after it.
    newline_after: bool,
}

/// A child of a node in the green tree, with its offset in the file. The
/// printer walks the green tree: it allocates nothing per node, where the
/// red tree's cursors allocated one per node and token visited (a quarter of
/// formatting a large file).
#[derive(Clone, Copy)]
enum Element<'a> {
    Node(&'a GreenNodeData, TextSize),
    Token(&'a GreenTokenData, TextSize),
}

impl Element<'_> {
    fn kind(&self) -> SyntaxKind {
        match self {
            Element::Node(n, _) => kind(n.kind()),
            Element::Token(t, _) => kind(t.kind()),
        }
    }
}

struct Printer {
    options: FormatOptions,
    comments: Comments,
    /// The red tree, for the rare walks among trivia around comments.
    root: SyntaxNode,
    /// The kinds of the nodes being printed, innermost last.
    open: Vec<SyntaxKind>,
    out: String,
    column: usize,
    indent: usize,
    pending: Sep,
    /// Nothing has been written since a block opened: no blank line here.
    block_start: bool,
}

impl Printer {
    fn new(options: FormatOptions, comments: Comments, root: SyntaxNode) -> Self {
        Printer {
            options,
            comments,
            root,
            open: Vec::new(),
            out: String::new(),
            column: 0,
            indent: 0,
            pending: Sep::None,
            block_start: true,
        }
    }

    fn sep(&mut self, sep: Sep) {
        self.pending = self.pending.max(sep);
    }

    /// The column the next write starts at.
    fn next_column(&self) -> usize {
        match self.pending {
            Sep::None => self.column,
            Sep::Space => self.column + usize::from(self.column > 0),
            Sep::Newline | Sep::BlankLine => self.indent,
        }
    }

    fn write(&mut self, text: &str) {
        let pending = std::mem::replace(&mut self.pending, Sep::None);
        match pending {
            Sep::None => {}
            Sep::Space => {
                if self.column > 0 {
                    self.out.push(' ');
                    self.column += 1;
                }
            }
            Sep::Newline | Sep::BlankLine => {
                if !self.out.is_empty() {
                    self.out.push('\n');
                    if pending == Sep::BlankLine && !self.block_start {
                        self.out.push('\n');
                    }
                    self.out.extend(std::iter::repeat_n(' ', self.indent));
                    self.column = self.indent;
                }
            }
        }
        self.out.push_str(text);
        match columns(text) {
            (true, after) => self.column = after,
            (false, width) => self.column += width,
        }
        self.block_start = false;
    }

    /// Prints the comments before the token at `offset`, then the token.
    fn token(&mut self, token: &GreenTokenData, offset: TextSize) {
        self.comments_before(offset);
        if self.pending >= Sep::Newline && self.comments.blank_line_before(offset) {
            self.sep(Sep::BlankLine);
        }
        self.write(token.text());
    }

    fn comments_before(&mut self, offset: TextSize) {
        if !self.comments.precede(offset) {
            return;
        }
        let token = self.root.token_at_offset(offset).right_biased();
        for comment in token.iter().flat_map(leading_comments) {
            self.comment(&comment);
        }
    }

    fn comment(&mut self, comment: &Comment) {
        let saved = self.pending;
        if comment.own_line {
            let sep = if comment.blank_before {
                Sep::BlankLine
            } else {
                Sep::Newline
            };
            self.pending = saved.max(sep);
            self.write(&comment.text);
            // `/* note */ x = 1;` keeps the code on the comment's line.
            self.pending = if comment.is_line || comment.newline_after {
                saved.max(Sep::Newline)
            } else {
                Sep::Space
            };
        } else {
            self.pending = Sep::Space;
            self.write(&comment.text);
            let after = if comment.is_line {
                Sep::Newline
            } else {
                Sep::Space
            };
            self.pending = saved.max(after);
        }
    }

    /// Comments after the last token of the file.
    fn trailing_comments(&mut self, root: &SyntaxNode) {
        let Some(last) = root.last_token() else {
            return;
        };
        let mut comments = Vec::new();
        let mut token = Some(last);
        while let Some(t) = token {
            if !t.kind().is_trivia() {
                break;
            }
            token = t.prev_token();
            comments.push(t);
        }
        comments.reverse();
        for comment in comments_of(&comments) {
            self.comment(&comment);
        }
    }

    fn element(&mut self, element: Element<'_>) {
        match element {
            Element::Node(node, offset) => self.node(node, offset),
            Element::Token(token, offset) => self.token(token, offset),
        }
    }

    fn node(&mut self, node: &GreenNodeData, offset: TextSize) {
        let node_kind = kind(node.kind());
        let parent = self.open.last().copied();
        self.open.push(node_kind);
        match node_kind {
            ROOT => self.statements(node, offset),
            BODY => self.body(node, offset),
            VALUE_LIST => self.value_list(node, offset),
            MAP => self.map(node, offset, parent == Some(IMPORT)),
            _ => self.generic(node, offset),
        }
        self.open.pop();
    }

    /// Children with their usual spacing: one space between, none around `.`
    /// and before `;` and `,`.
    fn generic(&mut self, node: &GreenNodeData, offset: TextSize) {
        let mut prev: Option<SyntaxKind> = None;
        for element in significant_children(node, offset) {
            let kind = element.kind();
            if let Some(prev) = prev {
                self.sep(space_between(prev, kind));
            }
            self.element(element);
            prev = Some(kind);
        }
    }

    /// The statements of a file: one a line, single blank lines kept.
    fn statements(&mut self, node: &GreenNodeData, offset: TextSize) {
        for element in significant_children(node, offset) {
            self.sep(Sep::Newline);
            self.element(element);
        }
    }

    fn body(&mut self, node: &GreenNodeData, offset: TextSize) {
        let outer = self.indent;
        let empty = significant_children(node, offset).count() == 2
            && !self.comments.within(TextRange::at(offset, node.text_len()));
        for element in significant_children(node, offset) {
            match element {
                Element::Token(t, at) if kind(t.kind()) == L_CURLY => {
                    self.sep(Sep::Space);
                    self.token(t, at);
                    self.indent = outer + self.options.indent_width;
                    self.block_start = true;
                }
                Element::Token(t, at) if kind(t.kind()) == R_CURLY => {
                    self.comments_before(at);
                    self.indent = outer;
                    if !empty {
                        self.pending = Sep::Newline;
                    }
                    self.write(t.text());
                }
                other => {
                    self.sep(Sep::Newline);
                    self.element(other);
                }
            }
        }
        self.indent = outer;
    }

    /// Flat when it fits and holds no comment; else one value a line, aligned
    /// under the first.
    fn value_list(&mut self, node: &GreenNodeData, offset: TextSize) {
        if self.fits_flat(node, offset, 1) {
            return self.generic(node, offset);
        }
        let outer = self.indent;
        self.indent = self.next_column();
        for element in significant_children(node, offset) {
            let kind = element.kind();
            self.element(element);
            if kind == COMMA {
                self.sep(Sep::Newline);
            }
        }
        self.indent = outer;
    }

    fn map(&mut self, node: &GreenNodeData, offset: TextSize, in_import: bool) {
        let has_trailing_comma = significant_children(node, offset)
            .filter(|e| e.kind() != R_CURLY)
            .last()
            .is_some_and(|e| e.kind() == COMMA);
        // Like prettier: an import map written with a line break after `{`,
        // or with a trailing comma, stays one pair a line.
        let broken_by_author = first_token_followed_by_newline(node);
        if !(in_import && (has_trailing_comma || broken_by_author))
            && self.fits_flat(node, offset, 1)
        {
            return self.generic(node, offset);
        }
        let outer = self.indent;
        if in_import {
            // Block style: one pair a line, `}` back at the statement's indent.
            for element in significant_children(node, offset) {
                match element {
                    Element::Token(_, _) if element.kind() == L_CURLY => {
                        self.element(element);
                        self.indent = outer + self.options.indent_width;
                        self.block_start = true;
                        self.sep(Sep::Newline);
                    }
                    Element::Token(t, at) if element.kind() == R_CURLY => {
                        self.comments_before(at);
                        self.indent = outer;
                        self.pending = Sep::Newline;
                        self.write(t.text());
                    }
                    _ if element.kind() == COMMA => {
                        self.element(element);
                        self.sep(Sep::Newline);
                    }
                    _ => self.element(element),
                }
            }
        } else {
            // Aligned style, as in the paper: `{ a => x,` then `  b => y }`.
            for element in significant_children(node, offset) {
                match element.kind() {
                    L_CURLY => {
                        self.element(element);
                        self.indent = self.column + 1;
                        self.sep(Sep::Space);
                    }
                    R_CURLY => {
                        self.sep(Sep::Space);
                        self.element(element);
                    }
                    COMMA => {
                        self.element(element);
                        self.sep(Sep::Newline);
                    }
                    _ => self.element(element),
                }
            }
        }
        self.indent = outer;
    }

    /// Can `node` go on the current line, followed by `tail` more characters?
    /// Measured on the green tree, which allocates nothing, and only as far
    /// as the line has room (a flat copy printed in full, for every list and
    /// map at every depth, was most of formatting a large file).
    fn fits_flat(&self, node: &GreenNodeData, offset: TextSize, tail: usize) -> bool {
        if self.comments.within(TextRange::at(offset, node.text_len())) {
            return false;
        }
        let room = self
            .options
            .max_width
            .saturating_sub(self.next_column() + tail);
        let mut measure = FlatMeasure {
            column: 0,
            pending: Sep::None,
            room,
            over: false,
        };
        measure.node(node);
        !measure.over
    }
}

/// The width of a node printed flat (as `Printer::generic` prints it at
/// every depth), stopping once it is past `room` or would break a line.
struct FlatMeasure {
    column: usize,
    pending: Sep,
    room: usize,
    over: bool,
}

impl FlatMeasure {
    fn node(&mut self, node: &GreenNodeData) {
        if matches!(kind(node.kind()), BODY | ROOT) {
            self.over = true; // blocks are never flat
            return;
        }
        let mut prev: Option<SyntaxKind> = None;
        for child in node.children() {
            if self.over {
                return;
            }
            let k = kind(child.kind());
            if k.is_trivia() {
                continue;
            }
            if let Some(prev) = prev {
                self.pending = self.pending.max(space_between(prev, k));
            }
            match child {
                NodeOrToken::Node(n) => self.node(n),
                NodeOrToken::Token(t) => self.write(t.text()),
            }
            prev = Some(k);
        }
    }

    fn write(&mut self, text: &str) {
        if std::mem::replace(&mut self.pending, Sep::None) != Sep::None && self.column > 0 {
            self.column += 1;
        }
        let (line_break, width) = columns(text);
        self.column += width;
        self.over |= line_break || self.column > self.room;
    }
}

/// Whether `text` holds a line break, and the characters after the last one
/// (all of them when there is none): one pass over the bytes, which for the
/// short texts of tokens beats searching for `\n` and then counting chars.
fn columns(text: &str) -> (bool, usize) {
    let mut line_break = false;
    let mut width = 0;
    for &byte in text.as_bytes() {
        if byte == b'\n' {
            line_break = true;
            width = 0;
        } else if byte & 0xC0 != 0x80 {
            // Not a UTF-8 continuation byte: a character starts here.
            width += 1;
        }
    }
    (line_break, width)
}

fn kind(raw: rowan::SyntaxKind) -> SyntaxKind {
    CvlLanguage::kind_from_raw(raw)
}

/// Where the file's comments and blank lines are, found in one walk of the
/// green tree: what lets the printer ask "a comment here?" or "a blank line
/// before this token?" without walking the tree again.
struct Comments {
    /// Start of every comment, in order.
    starts: Vec<TextSize>,
    /// Start of every non-trivia token with a comment among the trivia
    /// directly before it, in order.
    preceded: Vec<TextSize>,
    /// Start of every non-trivia token directly after whitespace holding an
    /// empty line, in order.
    after_blank: Vec<TextSize>,
}

impl Comments {
    fn of(root: &GreenNodeData) -> Comments {
        /// The walk's state: the offset, and what the trivia just seen held.
        struct Walk {
            offset: TextSize,
            comment_pending: bool,
            blank_pending: bool,
            found: Comments,
        }
        fn walk(node: &GreenNodeData, w: &mut Walk) {
            for child in node.children() {
                match child {
                    NodeOrToken::Node(n) => walk(n, w),
                    NodeOrToken::Token(t) => {
                        let k = kind(t.kind());
                        if k.is_comment() {
                            w.found.starts.push(w.offset);
                            w.comment_pending = true;
                            w.blank_pending = false;
                        } else if k == WHITESPACE {
                            w.blank_pending = t.text().matches('\n').nth(1).is_some();
                        } else {
                            if std::mem::take(&mut w.comment_pending) {
                                w.found.preceded.push(w.offset);
                            }
                            if std::mem::take(&mut w.blank_pending) {
                                w.found.after_blank.push(w.offset);
                            }
                        }
                        w.offset += t.text_len();
                    }
                }
            }
        }
        let mut w = Walk {
            offset: TextSize::from(0),
            comment_pending: false,
            blank_pending: false,
            found: Comments {
                starts: Vec::new(),
                preceded: Vec::new(),
                after_blank: Vec::new(),
            },
        };
        walk(root, &mut w);
        w.found
    }

    /// Does a comment start inside `range`?
    fn within(&self, range: TextRange) -> bool {
        let i = self.starts.partition_point(|&s| s < range.start());
        self.starts.get(i).is_some_and(|&s| s < range.end())
    }

    /// Is the token at `offset` directly preceded by a comment?
    fn precede(&self, offset: TextSize) -> bool {
        self.preceded.binary_search(&offset).is_ok()
    }

    /// Did an empty line stand directly before the token at `offset` (after
    /// any comment)?
    fn blank_line_before(&self, offset: TextSize) -> bool {
        self.after_blank.binary_search(&offset).is_ok()
    }
}

fn space_between(prev: SyntaxKind, next: SyntaxKind) -> Sep {
    if matches!(next, SEMICOLON | COMMA | DOT) || prev == DOT {
        Sep::None
    } else {
        Sep::Space
    }
}

/// A node's children other than trivia, each with its offset.
fn significant_children(
    node: &GreenNodeData,
    offset: TextSize,
) -> impl Iterator<Item = Element<'_>> {
    crate::significant_green_children(node, offset).map(|(child, start)| match child {
        NodeOrToken::Node(n) => Element::Node(n, start),
        NodeOrToken::Token(t) => Element::Token(t, start),
    })
}

/// The trivia directly before `token`, in source order.
fn trivia_before(token: &SyntaxToken) -> Vec<SyntaxToken> {
    let mut trivia = Vec::new();
    let mut prev = token.prev_token();
    while let Some(t) = prev {
        if !t.kind().is_trivia() {
            break;
        }
        prev = t.prev_token();
        trivia.push(t);
    }
    trivia.reverse();
    trivia
}

fn leading_comments(token: &SyntaxToken) -> Vec<Comment> {
    comments_of(&trivia_before(token))
}

fn comments_of(trivia: &[SyntaxToken]) -> Vec<Comment> {
    let mut comments = Vec::new();
    for (i, t) in trivia.iter().enumerate() {
        if !t.kind().is_comment() {
            continue;
        }
        let whitespace = i
            .checked_sub(1)
            .map(|j| &trivia[j])
            .filter(|w| w.kind() == WHITESPACE);
        let newlines = whitespace.map_or(0, |w| w.text().matches('\n').count());
        let at_file_start = t.prev_token().is_none()
            || (i == 1 && whitespace.is_some_and(|w| w.prev_token().is_none()));
        comments.push(Comment {
            text: t.text().trim_end().to_string(),
            is_line: t.kind() == LINE_COMMENT,
            own_line: newlines > 0 || at_file_start,
            blank_before: newlines > 1,
            newline_after: t.next_token().is_none_or(|n| {
                n.kind() == LINE_COMMENT || (n.kind() == WHITESPACE && n.text().contains('\n'))
            }),
        });
    }
    comments
}

/// Is the first token of `node` (a map's `{`) followed by a line break? The
/// trivia after it belongs to the map itself (trivia before a node's first
/// token is its parent's), so it is the map's second child.
fn first_token_followed_by_newline(node: &GreenNodeData) -> bool {
    let mut children = node.children();
    let first_is_token = matches!(children.next(), Some(NodeOrToken::Token(_)));
    first_is_token
        && matches!(children.next(), Some(NodeOrToken::Token(t))
            if kind(t.kind()) == WHITESPACE && t.text().contains('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(text: &str) -> String {
        format_text(text, FormatOptions::default()).unwrap()
    }

    #[test]
    fn canonical_layout() {
        let input = "CVL=\"0.8\";\n\n\nA extends  VMAppliance{var \"required\"  x,y;Interface e1;\
                     x=\"1\";datadisks={device=>\"ide0:1\",size=>\"1M\"};}";
        let expected = "CVL = \"0.8\";\n\nA extends VMAppliance {\n  var \"required\" x, y;\n  \
                        Interface e1;\n  x = \"1\";\n  datadisks = { device => \"ide0:1\", size => \"1M\" };\n}\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn comments_stay_where_they_were() {
        let input = "/* head */\nA extends B { // trailing\n  /* own */\n  x = \"1\"; /* after */\n  // last\n}\n// end\n";
        assert_eq!(fmt(input), input);
    }

    #[test]
    fn long_values_break_aligned() {
        let input = "G extends VANAppliance { d.dnshosts = { name => l.name, ip => l.ethernet0.ip }, { name => d.name, ip => d.ethernet0.ip }, { name => f.name, ip => f.ethernet0.ip }; }";
        let expected = "G extends VANAppliance {\n  d.dnshosts = { name => l.name, ip => l.ethernet0.ip },\n               { name => d.name, ip => d.ethernet0.ip },\n               { name => f.name, ip => f.ethernet0.ip };\n}\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn import_with_trailing_comma_is_a_block() {
        let input = "import { url => \"http://x/G\", cvl => \"G.cvl\", } G;";
        let expected = "import {\n  url => \"http://x/G\",\n  cvl => \"G.cvl\",\n} G;\n";
        assert_eq!(fmt(input), expected);
    }

    #[test]
    fn columns_count_characters_after_the_last_line_break() {
        assert_eq!(columns(""), (false, 0));
        assert_eq!(columns("a\u{e9}\u{20ac}"), (false, 3));
        assert_eq!(columns("/* x\n   \u{e9}t\u{e9} */"), (true, 9));
        assert_eq!(columns("/* a\n*/\n"), (true, 0));
    }

    #[test]
    fn empty_body() {
        assert_eq!(fmt("A extends B {   }"), "A extends B {}\n");
    }

    #[test]
    fn refuses_broken_files() {
        let errors = format_text("A extends B { x = ; }", FormatOptions::default()).unwrap_err();
        assert!(!errors.is_empty());
    }
}
