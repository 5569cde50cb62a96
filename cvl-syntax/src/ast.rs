//! The typed AST: thin wrappers over rowan nodes with accessors. Accessors
//! return `Option` or possibly empty iterators because a broken file can lack
//! anything; none of them allocates a tree or fails.

use crate::{lexer, SyntaxKind, SyntaxKind::*, SyntaxNode, SyntaxToken};

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
    /// A name referring to an object: a component's type or a parent.
    TypeRef, TYPE_REF
);
ast_node!(
    /// Names being declared.
    NameList, NAME_LIST
);
ast_node!(
    /// One name being declared.
    Name, NAME
);
ast_node!(
    /// `target = value, value;`
    Assign, ASSIGN
);
ast_node!(
    /// `a.b.c`: an assignment target or a reference.
    Path, PATH
);
ast_node!(
    /// The values of an assignment.
    ValueList, VALUE_LIST
);
ast_node!(
    /// `"text"`
    Literal, LITERAL
);
ast_node!(
    /// `{ key => value, ... }`
    Map, MAP
);
ast_node!(
    /// `key => value`
    Pair, PAIR
);
ast_node!(
    /// The key of a pair: a name or a string.
    MapKey, MAP_KEY
);

ast_enum!(
    /// What a file holds at the top level.
    Item { Import, Object, Assign }
);
ast_enum!(
    /// What an object's body holds.
    Stmt { VarDecl, ComponentDecl, Assign }
);
ast_enum!(
    /// One element of a value list, or a map's value.
    Value { Literal, Path, Map }
);

fn child<N: AstNode>(node: &SyntaxNode) -> Option<N> {
    node.children().find_map(N::cast)
}

fn children<N: AstNode>(node: &SyntaxNode) -> impl Iterator<Item = N> {
    node.children().filter_map(N::cast)
}

fn token(node: &SyntaxNode, kind: SyntaxKind) -> Option<SyntaxToken> {
    node.children_with_tokens()
        .filter_map(|it| it.into_token())
        .find(|it| it.kind() == kind)
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
    pub fn name(&self) -> Option<Name> {
        child(&self.0)
    }
}

impl Object {
    pub fn name(&self) -> Option<Name> {
        child(&self.0)
    }
    pub fn extends_clause(&self) -> Option<ExtendsClause> {
        child(&self.0)
    }
    /// The parent named after `extends`.
    pub fn parent(&self) -> Option<TypeRef> {
        self.extends_clause().and_then(|e| child(&e.0))
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
        self.attr_list().into_iter().flat_map(|a| {
            a.0.children_with_tokens()
                .filter_map(|it| it.into_token())
                .filter(|t| t.kind() == STRING)
                .collect::<Vec<_>>()
        })
    }
    pub fn names(&self) -> impl Iterator<Item = Name> {
        child::<NameList>(&self.0)
            .into_iter()
            .flat_map(|l| l.names().collect::<Vec<_>>())
    }
}

impl ComponentDecl {
    pub fn type_ref(&self) -> Option<TypeRef> {
        child(&self.0)
    }
    pub fn names(&self) -> impl Iterator<Item = Name> {
        child::<NameList>(&self.0)
            .into_iter()
            .flat_map(|l| l.names().collect::<Vec<_>>())
    }
}

impl NameList {
    pub fn names(&self) -> impl Iterator<Item = Name> {
        children(&self.0)
    }
}

impl Name {
    pub fn ident(&self) -> Option<SyntaxToken> {
        token(&self.0, IDENT)
    }
    pub fn text(&self) -> String {
        self.ident()
            .map(|t| t.text().to_string())
            .unwrap_or_default()
    }
}

impl TypeRef {
    pub fn ident(&self) -> Option<SyntaxToken> {
        token(&self.0, IDENT)
    }
    pub fn text(&self) -> String {
        self.ident()
            .map(|t| t.text().to_string())
            .unwrap_or_default()
    }
}

impl Assign {
    pub fn target(&self) -> Option<Path> {
        child(&self.0)
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
    /// The names of the path, in order.
    pub fn segments(&self) -> impl Iterator<Item = SyntaxToken> {
        self.0
            .children_with_tokens()
            .filter_map(|it| it.into_token())
            .filter(|t| t.kind() == IDENT)
    }
    /// The path as written without trivia: `l.ethernet0.ip`.
    pub fn text(&self) -> String {
        let segments: Vec<String> = self.segments().map(|t| t.text().to_string()).collect();
        segments.join(".")
    }
}

impl ValueList {
    pub fn values(&self) -> impl Iterator<Item = Value> {
        children(&self.0)
    }
}

impl Literal {
    pub fn token(&self) -> Option<SyntaxToken> {
        token(&self.0, STRING)
    }
    /// The string it denotes, escapes decoded.
    pub fn value(&self) -> String {
        self.token()
            .map(|t| lexer::unescape_string(t.text()))
            .unwrap_or_default()
    }
}

impl Map {
    pub fn pairs(&self) -> impl Iterator<Item = Pair> {
        children(&self.0)
    }
}

impl Pair {
    pub fn key(&self) -> Option<MapKey> {
        child(&self.0)
    }
    pub fn value(&self) -> Option<Value> {
        child(&self.0)
    }
}

impl MapKey {
    pub fn token(&self) -> Option<SyntaxToken> {
        self.0
            .children_with_tokens()
            .filter_map(|it| it.into_token())
            .find(|t| matches!(t.kind(), IDENT | STRING))
    }
    /// The key it denotes: the name, or the string with escapes decoded.
    pub fn text(&self) -> String {
        match self.token() {
            Some(t) if t.kind() == STRING => lexer::unescape_string(t.text()),
            Some(t) => t.text().to_string(),
            None => String::new(),
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
