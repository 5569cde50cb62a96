//! The one enum of token and node kinds: logos lexes into it, rowan stores it.
//!
//! Tokens come first, composite nodes after, `ROOT` last. Never reorder: the
//! numeric values are the rowan kinds of every tree in memory.

use logos::Logos;

/// Every kind of token and node in a CVL syntax tree.
#[derive(Logos, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum SyntaxKind {
    // ---- tokens ----
    #[regex(r"[ \t\r\n]+")]
    WHITESPACE = 0,
    /// `// to end of line`
    #[regex(r"//[^\n]*", allow_greedy = true)]
    LINE_COMMENT,
    /// `/* ... */`; an unterminated one runs to the end of the file.
    #[token("/*", lex_block_comment)]
    BLOCK_COMMENT,
    #[token("import")]
    IMPORT_KW,
    #[token("extends")]
    EXTENDS_KW,
    #[token("var")]
    VAR_KW,
    /// An `Item`: `[A-Za-z][A-Za-z0-9_]*`.
    #[regex(r"[A-Za-z][A-Za-z0-9_]*")]
    IDENT,
    /// `"..."`; an unterminated one stops before the end of its line.
    #[token("\"", lex_string)]
    STRING,
    #[token("{")]
    L_CURLY,
    #[token("}")]
    R_CURLY,
    #[token(";")]
    SEMICOLON,
    #[token(",")]
    COMMA,
    #[token("=")]
    EQ,
    #[token("=>")]
    FAT_ARROW,
    #[token(".")]
    DOT,
    /// Any run of bytes no other rule accepts.
    ERROR_TOKEN,
    /// The end of the input: what the parser sees past the last token; never in a tree.
    EOF,

    // ---- nodes ----
    /// e.g.: `import { url => "file://./DNS", cvl => "DNS.cvl" } DNS;`
    IMPORT,
    /// e.g.: `Groupware extends VANAppliance { ... }`
    OBJECT,
    /// e.g.: `extends VANAppliance`
    EXTENDS_CLAUSE,
    /// e.g.: `{ var x; x = "1"; }` (an object's body)
    BODY,
    /// e.g.: `var "required" "sensitive" rootpw, proxypw;`
    VAR_DECL,
    /// e.g.: `"required" "sensitive"`
    ATTR_LIST,
    /// e.g.: `DNS d, e;`
    COMPONENT_DECL,
    /// e.g.: `d, e` (names declared by `var` or a component declaration)
    NAME_LIST,
    /// e.g.: `d.domain = domain;`
    ASSIGN,
    /// e.g.: `l.ethernet0.ip` (a dotted reference or assignment target; an
    /// undotted one is a bare `IDENT`)
    PATH,
    /// e.g.: `"a", b, { k => "v" }` (the right-hand side of an assignment)
    VALUE_LIST,
    /// e.g.: `{ name => l.name, ip => l.ethernet0.ip }`
    MAP,
    /// e.g.: `name => l.name`
    PAIR,
    /// Tokens the parser could not place; always carries an error.
    ERROR,
    /// A whole file.
    ROOT,
}

use SyntaxKind::*;

impl SyntaxKind {
    /// Whitespace and comments: kept in the tree, skipped by the parser.
    pub fn is_trivia(self) -> bool {
        matches!(self, WHITESPACE | LINE_COMMENT | BLOCK_COMMENT)
    }

    pub fn is_comment(self) -> bool {
        matches!(self, LINE_COMMENT | BLOCK_COMMENT)
    }

    pub fn is_token(self) -> bool {
        self <= ERROR_TOKEN
    }

    /// How the kind is written in an error message: "`;`", "a name", ...
    pub fn describe(self) -> &'static str {
        match self {
            WHITESPACE => "whitespace",
            LINE_COMMENT | BLOCK_COMMENT => "a comment",
            IMPORT_KW => "`import`",
            EXTENDS_KW => "`extends`",
            VAR_KW => "`var`",
            IDENT => "a name",
            STRING => "a string",
            L_CURLY => "`{`",
            R_CURLY => "`}`",
            SEMICOLON => "`;`",
            COMMA => "`,`",
            EQ => "`=`",
            FAT_ARROW => "`=>`",
            DOT => "`.`",
            ERROR_TOKEN => "an invalid character",
            EOF => "the end of the file",
            _ => "a node",
        }
    }
}

impl From<SyntaxKind> for rowan::SyntaxKind {
    fn from(kind: SyntaxKind) -> Self {
        Self(kind as u16)
    }
}

/// Consumes a block comment after its `/*`; without a `*/` it takes the rest.
fn lex_block_comment(lex: &mut logos::Lexer<SyntaxKind>) {
    let rest = lex.remainder();
    match rest.find("*/") {
        Some(end) => lex.bump(end + 2),
        None => lex.bump(rest.len()),
    }
}

/// Consumes a string after its `"`, up to the closing quote or the end of the
/// line (exclusive), so an unterminated string does not swallow the file.
fn lex_string(lex: &mut logos::Lexer<SyntaxKind>) {
    let bytes = lex.remainder().as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                lex.bump(i + 1);
                return;
            }
            b'\n' => break,
            b'\\' if i + 1 < bytes.len() && bytes[i + 1] != b'\n' => {
                // Skip the escaped character whole (it may be multi-byte).
                let ch_len = lex.remainder()[i + 1..]
                    .chars()
                    .next()
                    .map_or(1, char::len_utf8);
                i += 1 + ch_len;
            }
            _ => i += 1,
        }
    }
    // Stop before a CR of a CRLF line end too.
    if i > 0 && bytes.get(i) == Some(&b'\n') && bytes[i - 1] == b'\r' {
        i -= 1;
    }
    lex.bump(i.min(bytes.len()));
}
