//! The typed AST: thin wrappers over rowan nodes and tokens with accessors.
//! Single names, strings and map keys are bare tokens in the tree (see
//! `grammar`); their types here wrap the token. Accessors return `Option` or
//! possibly empty iterators because a broken file can lack anything; none of
//! them allocates a tree or fails.

use crate::{lexer, SyntaxElement, SyntaxKind, SyntaxKind::*, SyntaxNode, SyntaxToken, TextRange};

/// A typed view of one kind of node.
pub trait AstNode: Sized {
    fn can_cast(kind: SyntaxKind) -> bool;
    fn cast(node: SyntaxNode) -> Option<Self>;
    fn syntax(&self) -> &SyntaxNode;
}

macro_rules! ast_node {
    ($(#[$doc:meta])* $name:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(SyntaxNode);

        impl AstNode for $name {
            fn can_cast(kind: SyntaxKind) -> bool {
                kind == $kind
            }
            fn cast(node: SyntaxNode) -> Option<Self> {
                Self::can_cast(node.kind()).then(|| Self(node))
            }
            fn syntax(&self) -> &SyntaxNode {
                &self.0
            }
        }
    };
}

macro_rules! ast_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name { $($variant($variant)),* }

        impl AstNode for $name {
            fn can_cast(kind: SyntaxKind) -> bool {
                $($variant::can_cast(kind))||*
            }
            fn cast(node: SyntaxNode) -> Option<Self> {
                $(if $variant::can_cast(node.kind()) {
                    return Some(Self::$variant($variant(node)));
                })*
                None
            }
            fn syntax(&self) -> &SyntaxNode {
                match self { $(Self::$variant(it) => it.syntax()),* }
            }
        }
    };
}

ast_node!(
    /// A whole file.
    SourceFile, ROOT
);
ast_node!(
    /// `import { url => "...", cvl => "..." } Name;`
    Import, IMPORT
);
ast_node!(
    /// `Name extends Parent { ... }`
    Object, OBJECT
);
ast_node!(
    /// `extends Parent`
    ExtendsClause, EXTENDS_CLAUSE
);
ast_node!(
    /// `{ ... }` of an object.
    Body, BODY
);
ast_node!(
    /// `var "required" a, b;`
    VarDecl, VAR_DECL
);
ast_node!(
    /// The string attributes of a `var`.
    AttrList, ATTR_LIST
);
ast_node!(
    /// `Type a, b;`
    ComponentDecl, COMPONENT_DECL
);
ast_node!(
    /// Names being declared.
    NameList, NAME_LIST
);
ast_node!(
    /// `target = value, value;`
    Assign, ASSIGN
);
ast_node!(
    /// The values of an assignment.
    ValueList, VALUE_LIST
);
ast_node!(
    /// `{ key => value, ... }`
    Map, MAP
);
ast_node!(
    /// `key => value`
    Pair, PAIR
);

macro_rules! ast_token {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(SyntaxToken);

        impl $name {
            pub fn syntax(&self) -> &SyntaxToken {
                &self.0
            }
        }
    };
}

ast_token!(
    /// One name being declared: an object's, a parameter's, a component's,
    /// an import's. A bare `IDENT` token, named by its place in its parent.
    Name
);
ast_token!(
    /// A name referring to an object: a parent after `extends` or a
    /// component's type. A bare `IDENT` token.
    TypeRef
);
ast_token!(
    /// `"text"`: a `STRING` token.
    Literal
);
ast_token!(
    /// The key of a pair: an `IDENT` or `STRING` token.
    MapKey
);

/// `a.b.c`: an assignment's target or a reference. A PATH node when dotted,
/// a bare `IDENT` token when it is a single name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path(SyntaxElement);

/// One element of a value list, or a map's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Literal(Literal),
    Path(Path),
    Map(Map),
}

ast_enum!(
    /// What a file holds at the top level.
    Item { Import, Object, Assign }
);
ast_enum!(
    /// What an object's body holds.
    Stmt { VarDecl, ComponentDecl, Assign }
);

fn child<N: AstNode>(node: &SyntaxNode) -> Option<N> {
    node.children().find_map(N::cast)
}

fn children<N: AstNode>(node: &SyntaxNode) -> impl Iterator<Item = N> {
    node.children().filter_map(N::cast)
}

/// The tokens of `node` (not of its descendants) of one kind.
fn tokens(node: &SyntaxNode, kind: SyntaxKind) -> impl Iterator<Item = SyntaxToken> {
    node.children_with_tokens()
        .filter_map(|it| it.into_token())
        .filter(move |it| it.kind() == kind)
}

fn token(node: &SyntaxNode, kind: SyntaxKind) -> Option<SyntaxToken> {
    tokens(node, kind).next()
}

/// The children of `node` other than trivia.
fn significant(node: &SyntaxNode) -> impl Iterator<Item = SyntaxElement> {
    node.children_with_tokens()
        .filter(|it| !it.kind().is_trivia())
}

impl SourceFile {
    pub fn items(&self) -> impl Iterator<Item = Item> {
        children(&self.0)
    }
    pub fn imports(&self) -> impl Iterator<Item = Import> {
        children(&self.0)
    }
    pub fn objects(&self) -> impl Iterator<Item = Object> {
        children(&self.0)
    }
    pub fn assignments(&self) -> impl Iterator<Item = Assign> {
        children(&self.0)
    }
}

impl Import {
    pub fn map(&self) -> Option<Map> {
        child(&self.0)
    }
    /// The name after the map.
    pub fn name(&self) -> Option<Name> {
        token(&self.0, IDENT).map(Name)
    }
}

impl Object {
    pub fn name(&self) -> Option<Name> {
        token(&self.0, IDENT).map(Name)
    }
    pub fn extends_clause(&self) -> Option<ExtendsClause> {
        child(&self.0)
    }
    /// The parent named after `extends`.
    pub fn parent(&self) -> Option<TypeRef> {
        self.extends_clause()
            .and_then(|e| token(&e.0, IDENT))
            .map(TypeRef)
    }
    pub fn body(&self) -> Option<Body> {
        child(&self.0)
    }
    pub fn statements(&self) -> impl Iterator<Item = Stmt> {
        self.body().into_iter().flat_map(|b| b.statements())
    }
}

impl Body {
    pub fn statements(&self) -> impl Iterator<Item = Stmt> {
        children(&self.0)
    }
    pub fn l_curly(&self) -> Option<SyntaxToken> {
        token(&self.0, L_CURLY)
    }
    pub fn r_curly(&self) -> Option<SyntaxToken> {
        token(&self.0, R_CURLY)
    }
}

impl VarDecl {
    pub fn attr_list(&self) -> Option<AttrList> {
        child(&self.0)
    }
    /// The attribute strings as written, quotes included.
    pub fn attributes(&self) -> impl Iterator<Item = SyntaxToken> {
        self.attr_list()
            .into_iter()
            .flat_map(|a| tokens(&a.0, STRING).collect::<Vec<_>>())
    }
    pub fn names(&self) -> impl Iterator<Item = Name> {
        child::<NameList>(&self.0)
            .into_iter()
            .flat_map(|l| l.names().collect::<Vec<_>>())
    }
}

impl ComponentDecl {
    /// The type before the names.
    pub fn type_ref(&self) -> Option<TypeRef> {
        token(&self.0, IDENT).map(TypeRef)
    }
    pub fn names(&self) -> impl Iterator<Item = Name> {
        child::<NameList>(&self.0)
            .into_iter()
            .flat_map(|l| l.names().collect::<Vec<_>>())
    }
}

impl NameList {
    pub fn names(&self) -> impl Iterator<Item = Name> {
        tokens(&self.0, IDENT).map(Name)
    }
}

impl Name {
    pub fn text(&self) -> String {
        self.0.text().to_string()
    }
}

impl TypeRef {
    pub fn text(&self) -> String {
        self.0.text().to_string()
    }
}

impl Assign {
    /// The path before `=`.
    pub fn target(&self) -> Option<Path> {
        significant(&self.0).next().and_then(Path::cast)
    }
    pub fn value_list(&self) -> Option<ValueList> {
        child(&self.0)
    }
    pub fn values(&self) -> impl Iterator<Item = Value> {
        self.value_list()
            .into_iter()
            .flat_map(|l| l.values().collect::<Vec<_>>())
    }
}

impl Path {
    /// An `IDENT` token or a PATH node as a path.
    pub fn cast(element: SyntaxElement) -> Option<Path> {
        matches!(element.kind(), IDENT | PATH).then(|| Path(element))
    }
    pub fn syntax(&self) -> &SyntaxElement {
        &self.0
    }
    /// The names of the path, in order.
    pub fn segments(&self) -> impl Iterator<Item = SyntaxToken> {
        let (single, dotted) = match &self.0 {
            SyntaxElement::Token(token) => (Some(token.clone()), None),
            SyntaxElement::Node(node) => (None, Some(tokens(node, IDENT))),
        };
        single.into_iter().chain(dotted.into_iter().flatten())
    }
    /// The path as written without trivia: `l.ethernet0.ip`.
    pub fn text(&self) -> String {
        let segments: Vec<String> = self.segments().map(|t| t.text().to_string()).collect();
        segments.join(".")
    }
}

impl Value {
    /// A `STRING` token, an `IDENT` token or PATH node, or a MAP node as a value.
    pub fn cast(element: SyntaxElement) -> Option<Value> {
        match element {
            SyntaxElement::Token(token) if token.kind() == STRING => {
                Some(Value::Literal(Literal(token)))
            }
            SyntaxElement::Node(node) if node.kind() == MAP => Some(Value::Map(Map(node))),
            other => Path::cast(other).map(Value::Path),
        }
    }
    pub fn text_range(&self) -> TextRange {
        match self {
            Value::Literal(l) => l.0.text_range(),
            Value::Path(p) => p.0.text_range(),
            Value::Map(m) => m.0.text_range(),
        }
    }
}

impl ValueList {
    pub fn values(&self) -> impl Iterator<Item = Value> {
        significant(&self.0).filter_map(Value::cast)
    }
}

impl Literal {
    /// The string it denotes, escapes decoded.
    pub fn value(&self) -> String {
        lexer::unescape_string(self.0.text())
    }
}

impl Map {
    pub fn pairs(&self) -> impl Iterator<Item = Pair> {
        children(&self.0)
    }
}

impl Pair {
    /// The name or string before `=>`: the pair's first element when present.
    pub fn key(&self) -> Option<MapKey> {
        significant(&self.0)
            .next()
            .and_then(|it| it.into_token())
            .filter(|t| matches!(t.kind(), IDENT | STRING))
            .map(MapKey)
    }
    /// The value after the key.
    pub fn value(&self) -> Option<Value> {
        let skip = usize::from(self.key().is_some());
        significant(&self.0).skip(skip).find_map(Value::cast)
    }
}

impl MapKey {
    /// The key it denotes: the name, or the string with escapes decoded.
    pub fn text(&self) -> String {
        match self.0.kind() {
            STRING => lexer::unescape_string(self.0.text()),
            _ => self.0.text().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_over_a_figure() {
        let parse = crate::parse(
            "import { url => \"file://./DNS\", cvl => \"DNS.cvl\" } DNS;\n\
             G extends VANAppliance {\n  var \"required\" domain, x;\n  DNS d;\n\
             d.domain = domain, \"a\\\"b\", { k => { n => v } };\n}\n",
        );
        assert!(parse.errors().is_empty(), "{:?}", parse.errors());
        let file = parse.tree();
        let import = file.imports().next().unwrap();
        assert_eq!(import.name().unwrap().text(), "DNS");
        let keys: Vec<_> = import
            .map()
            .unwrap()
            .pairs()
            .map(|p| p.key().unwrap().text())
            .collect();
        assert_eq!(keys, ["url", "cvl"]);
        let object = file.objects().next().unwrap();
        assert_eq!(object.name().unwrap().text(), "G");
        assert_eq!(object.parent().unwrap().text(), "VANAppliance");
        let stmts: Vec<_> = object.statements().collect();
        assert_eq!(stmts.len(), 3);
        let Stmt::VarDecl(var) = &stmts[0] else {
            panic!()
        };
        let attrs: Vec<_> = var.attributes().map(|t| t.text().to_string()).collect();
        assert_eq!(attrs, ["\"required\""]);
        assert_eq!(
            var.names().map(|n| n.text()).collect::<Vec<_>>(),
            ["domain", "x"]
        );
        let Stmt::Assign(assign) = &stmts[2] else {
            panic!()
        };
        assert_eq!(assign.target().unwrap().text(), "d.domain");
        let values: Vec<_> = assign.values().collect();
        assert!(matches!(&values[0], Value::Path(p) if p.text() == "domain"));
        assert!(matches!(&values[1], Value::Literal(l) if l.value() == "a\"b"));
        assert!(matches!(&values[2], Value::Map(_)));
    }
}
