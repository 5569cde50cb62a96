//! The formatter: prints a syntax tree in the canonical CVL style.
//!
//! It walks every token of the tree in order, so it cannot drop one; layout is
//! decided per construct (a value list or map stays on one line when it fits
//! and holds no comment, else it breaks, aligned as in the paper's figures).
//! Comments are printed before the token they precede, on their own line when
//! they were on their own line. It refuses trees with syntax errors, and must
//! never change the sequence of non-trivia tokens.

use rowan::{GreenNodeData, Language, NodeOrToken, TextRange, TextSize};

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
    let mut printer = Printer::new(options, Comments::of(&root));
    printer.statements(&root);
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

struct Printer {
    options: FormatOptions,
    comments: Comments,
    out: String,
    column: usize,
    indent: usize,
    pending: Sep,
    /// Nothing has been written since a block opened: no blank line here.
    block_start: bool,
}

impl Printer {
    fn new(options: FormatOptions, comments: Comments) -> Self {
        Printer {
            options,
            comments,
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
        match text.rfind('\n') {
            Some(i) => self.column = text[i + 1..].chars().count(),
            None => self.column += text.chars().count(),
        }
        self.block_start = false;
    }

    /// Prints the comments before `token`, then the token.
    fn token(&mut self, token: &SyntaxToken) {
        self.comments_before(token);
        self.write_token(token);
    }

    fn write_token(&mut self, token: &SyntaxToken) {
        if self.pending >= Sep::Newline && blank_line_before(token) {
            self.sep(Sep::BlankLine);
        }
        self.write(token.text());
    }

    fn comments_before(&mut self, token: &SyntaxToken) {
        if !self.comments.precede(token) {
            return;
        }
        for comment in leading_comments(token) {
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

    fn element(&mut self, element: &NodeOrToken<SyntaxNode, SyntaxToken>) {
        match element {
            NodeOrToken::Node(node) => self.node(node),
            NodeOrToken::Token(token) => self.token(token),
        }
    }

    fn node(&mut self, node: &SyntaxNode) {
        match node.kind() {
            ROOT => self.statements(node),
            BODY => self.body(node),
            VALUE_LIST => self.value_list(node),
            MAP => self.map(node),
            _ => self.generic(node),
        }
    }

    /// Children with their usual spacing: one space between, none around `.`
    /// and before `;` and `,`.
    fn generic(&mut self, node: &SyntaxNode) {
        let mut prev: Option<SyntaxKind> = None;
        for element in significant_children(node) {
            let kind = element.kind();
            if let Some(prev) = prev {
                self.sep(space_between(prev, kind));
            }
            self.element(&element);
            prev = Some(kind);
        }
    }

    /// The statements of a file: one a line, single blank lines kept.
    fn statements(&mut self, node: &SyntaxNode) {
        for element in significant_children(node) {
            self.sep(Sep::Newline);
            self.element(&element);
        }
    }

    fn body(&mut self, node: &SyntaxNode) {
        let children: Vec<_> = significant_children(node).collect();
        let outer = self.indent;
        let empty = children.len() == 2 && !self.comments.within(node.text_range());
        for element in &children {
            match element {
                NodeOrToken::Token(t) if t.kind() == L_CURLY => {
                    self.sep(Sep::Space);
                    self.token(t);
                    self.indent = outer + self.options.indent_width;
                    self.block_start = true;
                }
                NodeOrToken::Token(t) if t.kind() == R_CURLY => {
                    self.comments_before(t);
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
    fn value_list(&mut self, node: &SyntaxNode) {
        if self.fits_flat(node, 1) {
            return self.generic(node);
        }
        let outer = self.indent;
        self.indent = self.next_column();
        for element in significant_children(node) {
            let kind = element.kind();
            if kind == COMMA {
                self.element(&element);
                self.sep(Sep::Newline);
            } else {
                self.element(&element);
            }
        }
        self.indent = outer;
    }

    fn map(&mut self, node: &SyntaxNode) {
        let in_import = node.parent().is_some_and(|p| p.kind() == IMPORT);
        let has_trailing_comma = significant_children(node)
            .filter(|e| e.kind() != R_CURLY)
            .last()
            .is_some_and(|e| e.kind() == COMMA);
        // Like prettier: an import map written with a line break after `{`,
        // or with a trailing comma, stays one pair a line.
        let broken_by_author = first_token_followed_by_newline(node);
        if !(in_import && (has_trailing_comma || broken_by_author)) && self.fits_flat(node, 1) {
            return self.generic(node);
        }
        let outer = self.indent;
        if in_import {
            // Block style: one pair a line, `}` back at the statement's indent.
            for element in significant_children(node) {
                match element.kind() {
                    L_CURLY => {
                        self.element(&element);
                        self.indent = outer + self.options.indent_width;
                        self.block_start = true;
                        self.sep(Sep::Newline);
                    }
                    R_CURLY => {
                        let NodeOrToken::Token(t) = &element else {
                            unreachable!("`}}` is a token")
                        };
                        self.comments_before(t);
                        self.indent = outer;
                        self.pending = Sep::Newline;
                        self.write(t.text());
                    }
                    COMMA => {
                        self.element(&element);
                        self.sep(Sep::Newline);
                    }
                    _ => self.element(&element),
                }
            }
        } else {
            // Aligned style, as in the paper: `{ a => x,` then `  b => y }`.
            for element in significant_children(node) {
                match element.kind() {
                    L_CURLY => {
                        self.element(&element);
                        self.indent = self.column + 1;
                        self.sep(Sep::Space);
                    }
                    R_CURLY => {
                        self.sep(Sep::Space);
                        self.element(&element);
                    }
                    COMMA => {
                        self.element(&element);
                        self.sep(Sep::Newline);
                    }
                    _ => self.element(&element),
                }
            }
        }
        self.indent = outer;
    }

    /// Can `node` go on the current line, followed by `tail` more characters?
    /// Measured on the green tree, which allocates nothing, and only as far
    /// as the line has room (a flat copy printed in full, for every list and
    /// map at every depth, was most of formatting a large file).
    fn fits_flat(&self, node: &SyntaxNode, tail: usize) -> bool {
        if self.comments.within(node.text_range()) {
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
        measure.node(&node.green());
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
        self.column += text.chars().count();
        self.over |= text.contains('\n') || self.column > self.room;
    }
}

fn kind(raw: rowan::SyntaxKind) -> SyntaxKind {
    CvlLanguage::kind_from_raw(raw)
}

/// Where the file's comments are, found in one walk of the green tree: what
/// lets the printer ask "a comment here?" without walking the tree again.
struct Comments {
    /// Start of every comment, in order.
    starts: std::rc::Rc<[TextSize]>,
    /// Start of every non-trivia token with a comment among the trivia
    /// directly before it, in order.
    preceded: std::rc::Rc<[TextSize]>,
}

impl Comments {
    fn of(root: &SyntaxNode) -> Comments {
        fn walk(
            node: &GreenNodeData,
            offset: &mut TextSize,
            pending: &mut bool,
            starts: &mut Vec<TextSize>,
            preceded: &mut Vec<TextSize>,
        ) {
            for child in node.children() {
                match child {
                    NodeOrToken::Node(n) => walk(n, offset, pending, starts, preceded),
                    NodeOrToken::Token(t) => {
                        let k = kind(t.kind());
                        if k.is_comment() {
                            starts.push(*offset);
                            *pending = true;
                        } else if !k.is_trivia() && std::mem::take(pending) {
                            preceded.push(*offset);
                        }
                        *offset += t.text_len();
                    }
                }
            }
        }
        let (mut starts, mut preceded) = (Vec::new(), Vec::new());
        let mut offset = root.text_range().start();
        walk(
            &root.green(),
            &mut offset,
            &mut false,
            &mut starts,
            &mut preceded,
        );
        Comments {
            starts: starts.into(),
            preceded: preceded.into(),
        }
    }

    /// Does a comment start inside `range`?
    fn within(&self, range: TextRange) -> bool {
        let i = self.starts.partition_point(|&s| s < range.start());
        self.starts.get(i).is_some_and(|&s| s < range.end())
    }

    /// Is `token` directly preceded by a comment?
    fn precede(&self, token: &SyntaxToken) -> bool {
        self.preceded
            .binary_search(&token.text_range().start())
            .is_ok()
    }
}

fn space_between(prev: SyntaxKind, next: SyntaxKind) -> Sep {
    if matches!(next, SEMICOLON | COMMA | DOT) || prev == DOT {
        Sep::None
    } else {
        Sep::Space
    }
}

fn significant_children(
    node: &SyntaxNode,
) -> impl Iterator<Item = NodeOrToken<SyntaxNode, SyntaxToken>> {
    node.children_with_tokens()
        .filter(|e| !e.kind().is_trivia())
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

/// Is the first token of `node` (a map's `{`) followed by a line break?
fn first_token_followed_by_newline(node: &SyntaxNode) -> bool {
    node.first_token()
        .and_then(|t| t.next_token())
        .is_some_and(|t| t.kind() == WHITESPACE && t.text().contains('\n'))
}

/// Did an empty line stand directly before `token` (after any comment)?
fn blank_line_before(token: &SyntaxToken) -> bool {
    token
        .prev_token()
        .filter(|t| t.kind() == WHITESPACE)
        .is_some_and(|w| w.text().matches('\n').count() > 1)
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
    fn empty_body() {
        assert_eq!(fmt("A extends B {   }"), "A extends B {}\n");
    }

    #[test]
    fn refuses_broken_files() {
        let errors = format_text("A extends B { x = ; }", FormatOptions::default()).unwrap_err();
        assert!(!errors.is_empty());
    }
}
