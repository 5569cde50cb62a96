//! The per-file summary: imports, the language version, and each object's
//! declarations and assignments, lowered from the syntax tree into plain data.
//!
//! Ranges inside an object are relative to the object's start, so an edit in
//! one object leaves every other object's `ObjectData` equal and salsa stops
//! invalidation there. Nothing here resolves names.

use std::sync::Arc;

use cvl_syntax::ast::{self, AstNode};
use cvl_syntax::{
    kind_from_raw, GreenNode, GreenNodeData, SyntaxKind, SyntaxToken, TextRange, TextSize,
};
use rustc_hash::FxHashMap;

/// A name with where it was written (relative to its owner's start). The
/// text is shared: a file's lowering hands out one copy of each name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Named {
    pub text: crate::resolve::Name,
    pub range: TextRange,
}

/// The lowered form of a value element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    Str {
        value: String,
        range: TextRange,
    },
    Ref {
        path: Vec<Named>,
        range: TextRange,
    },
    Map {
        pairs: Vec<(Named, Expr)>,
        range: TextRange,
    },
}

impl Expr {
    pub fn range(&self) -> TextRange {
        match self {
            Expr::Str { range, .. } | Expr::Ref { range, .. } | Expr::Map { range, .. } => *range,
        }
    }

    /// Every reference inside, maps included, in source order.
    pub fn refs(&self, out: &mut Vec<(Vec<Named>, TextRange)>) {
        match self {
            Expr::Str { .. } => {}
            Expr::Ref { path, range } => out.push((path.clone(), *range)),
            Expr::Map { pairs, .. } => pairs.iter().for_each(|(_, v)| v.refs(out)),
        }
    }

    /// Every string literal inside, maps included.
    pub fn literals(&self, out: &mut Vec<TextRange>) {
        match self {
            Expr::Str { range, .. } => out.push(*range),
            Expr::Ref { .. } => {}
            Expr::Map { pairs, .. } => pairs.iter().for_each(|(_, v)| v.literals(out)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VarItem {
    pub name: Named,
    pub required: bool,
    pub sensitive: bool,
    /// Attributes other than "required" and "sensitive".
    pub unknown_attributes: Vec<Named>,
    /// The whole `var` statement.
    pub decl_range: TextRange,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ComponentItem {
    pub ty: Named,
    pub name: Named,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssignItem {
    pub target: Vec<Named>,
    pub values: Vec<Expr>,
    pub range: TextRange,
}

/// What one object declares, ranges relative to the object's start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectData {
    pub name: Named,
    pub parent: Option<Named>,
    pub vars: Vec<VarItem>,
    pub components: Vec<ComponentItem>,
    pub assigns: Vec<AssignItem>,
    /// The object's whole text, relative (so starting at 0).
    pub range: TextRange,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImportItem {
    /// The local name the import binds.
    pub name: Option<Named>,
    pub url: Option<String>,
    pub cvl: Option<String>,
    pub version: Option<Named>,
    /// Problems with the map itself: missing or unknown keys, bad values.
    pub problems: Vec<(TextRange, String, bool)>,
    pub range: TextRange,
}

impl ImportItem {
    /// The same import, its ranges moved `offset` further into the file.
    fn shifted(mut self, offset: TextSize) -> ImportItem {
        if let Some(name) = &mut self.name {
            name.range += offset;
        }
        if let Some(version) = &mut self.version {
            version.range += offset;
        }
        for (range, _, _) in &mut self.problems {
            *range += offset;
        }
        self.range += offset;
        self
    }

    /// The key the loader resolves this import by.
    pub fn key(&self) -> Option<ImportKey> {
        Some(ImportKey {
            url: self.url.clone()?,
            cvl: self.cvl.clone()?,
            version: self.version.as_ref().map(|v| v.text.to_string()),
        })
    }
}

/// An import as written: what the loader resolves and the lock records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImportKey {
    pub url: String,
    pub cvl: String,
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectItem {
    pub start: TextSize,
    pub data: Arc<ObjectData>,
}

/// A file's summary. Absolute ranges for file-level items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemTree {
    pub imports: Vec<ImportItem>,
    /// Objects in source order (duplicates included, for diagnostics).
    pub objects: Vec<ObjectItem>,
    /// The first object of each name.
    pub by_name: FxHashMap<crate::resolve::Name, usize>,
    /// `CVL = "..."` statements: the version string and its range.
    pub versions: Vec<(Option<String>, TextRange)>,
    /// Other top-level assignments, which are not allowed: their targets.
    pub stray_assignments: Vec<Named>,
    /// The file's syntax errors (kept here so that checking needs no
    /// syntax tree once the file is lowered).
    pub syntax_errors: Vec<cvl_syntax::SyntaxError>,
}

impl ItemTree {
    pub fn object(&self, name: &str) -> Option<&ObjectItem> {
        self.by_name.get(name).map(|&i| &self.objects[i])
    }
}

/// Objects already lowered, by their green node: an object whose node is
/// the very node of the previous tree (incremental reparsing shares the
/// nodes of every object an edit did not touch) is not lowered again. Its
/// data is relative to its start, so it is the same wherever it now is.
/// And the whole file's summary, by the text it was lowered from.
#[derive(Default)]
pub struct Lowered {
    /// By the address of the node held beside it (which keeps the address
    /// from being reused by another node).
    objects: FxHashMap<usize, (GreenNode, Arc<ObjectData>)>,
    /// The summary, by the address and length of the text it was lowered
    /// from: the writer lowers a file as it sets its text, and the
    /// `item_tree` query then finds it here without the syntax tree. The
    /// text lives in the file's input until replaced, and a new text is
    /// always made while the old one still exists, so a text's address
    /// names it as long as this cache entry is the file's.
    tree: Option<((usize, usize), Arc<ItemTree>)>,
}

impl Lowered {
    /// The summary lowered from this very text, if it is the last one.
    pub fn for_text(&self, text: &str) -> Option<Arc<ItemTree>> {
        let (key, tree) = self.tree.as_ref()?;
        (*key == (text.as_ptr() as usize, text.len())).then(|| tree.clone())
    }

    /// Records that `tree` was lowered from `text`.
    pub fn set_text(&mut self, text: &str, tree: Arc<ItemTree>) {
        self.tree = Some(((text.as_ptr() as usize, text.len()), tree));
    }
}

/// Lowers `parse`, reusing the data of objects found in `previous`, which
/// is left holding this file's objects for the next time when `keep_nodes`
/// (holding them keeps their syntax alive: a batch check does not).
pub fn lower_parse(
    parse: &cvl_syntax::Parse,
    previous: &mut Lowered,
    keep_nodes: bool,
) -> Arc<ItemTree> {
    let file = parse.tree();
    let mut next = Lowered::default();
    let mut tree = lower_items(&file, |object| {
        let green = object.syntax().green().into_owned();
        let key = std::ptr::addr_of!(*green) as usize;
        let data = match previous.objects.remove(&key) {
            Some((_, data)) => data,
            None => Arc::new(lower_object(&green)?),
        };
        if keep_nodes {
            next.objects.insert(key, (green, data.clone()));
        }
        Some(data)
    });
    tree.syntax_errors = parse.errors().to_vec();
    *previous = next;
    NAMES.with_borrow_mut(|names| *names = Default::default());
    Arc::new(tree)
}

fn lower_items(
    file: &ast::SourceFile,
    mut object_data: impl FnMut(&ast::Object) -> Option<Arc<ObjectData>>,
) -> ItemTree {
    let mut tree = ItemTree::default();
    for item in file.items() {
        lower_item(&mut tree, item, TextSize::from(0), &mut object_data);
    }
    tree
}

/// Lowers a file item by item as it is parsed ([`cvl_syntax::parse_each_item`]),
/// never holding the syntax tree of more than one item: how a batch
/// database adds a file. The same summary as [`lower_parse`].
pub fn lower_text(text: &str) -> Arc<ItemTree> {
    let mut tree = ItemTree::default();
    let errors = cvl_syntax::parse_each_item(text, |green, offset| {
        let node = cvl_syntax::SyntaxNode::new_root(green);
        if let Some(item) = ast::Item::cast(node) {
            lower_item(&mut tree, item, offset, &mut |object| {
                Some(Arc::new(lower_object(&object.syntax().green())?))
            });
        }
    });
    tree.syntax_errors = errors;
    NAMES.with_borrow_mut(|names| *names = Default::default());
    Arc::new(tree)
}

/// Adds one top-level item to `tree`; the item's node starts at `offset`
/// in the file (0 when it is a node of the whole file's tree, whose ranges
/// are the file's already).
fn lower_item(
    tree: &mut ItemTree,
    item: ast::Item,
    offset: TextSize,
    object_data: &mut impl FnMut(&ast::Object) -> Option<Arc<ObjectData>>,
) {
    match item {
        ast::Item::Import(import) => tree.imports.push(lower_import(&import).shifted(offset)),
        ast::Item::Object(object) => {
            let start = object.syntax().text_range().start() + offset;
            if let Some(data) = object_data(&object) {
                let index = tree.objects.len();
                tree.by_name.entry(data.name.text.clone()).or_insert(index);
                tree.objects.push(ObjectItem { start, data });
            }
        }
        ast::Item::Assign(assign) => {
            let Some(target) = assign.target() else {
                return;
            };
            let segments = lower_path(&target, TextSize::from(0));
            if segments.len() == 1 && &*segments[0].text == "CVL" {
                let value = assign.values().next().and_then(|v| match v {
                    ast::Value::Literal(l) => Some(l.value()),
                    _ => None,
                });
                tree.versions
                    .push((value, assign.syntax().text_range() + offset));
            } else if let Some(mut first) = segments.into_iter().next() {
                first.range += offset;
                tree.stray_assignments.push(first);
            }
        }
    }
}

fn rel(range: TextRange, base: TextSize) -> TextRange {
    range.checked_sub(base).unwrap_or(range)
}

thread_local! {
    /// The names handed out while lowering one file (see [`lower_parse`]).
    static NAMES: std::cell::RefCell<rustc_hash::FxHashSet<crate::resolve::Name>> =
        Default::default();
}

/// The one copy of `text` for the file being lowered.
fn intern(text: &str) -> crate::resolve::Name {
    NAMES.with_borrow_mut(|names| match names.get(text) {
        Some(name) => name.clone(),
        None => {
            let name: crate::resolve::Name = text.into();
            names.insert(name.clone());
            name
        }
    })
}

fn named(token: &SyntaxToken, base: TextSize) -> Named {
    Named {
        text: intern(token.text()),
        range: rel(token.text_range(), base),
    }
}

fn lower_path(path: &ast::Path, base: TextSize) -> Vec<Named> {
    path.segments().map(|t| named(&t, base)).collect()
}

/// A node of an object's green tree with its offset from the object's start.
/// Lowering walks the green tree: the red tree's cursors allocated one node
/// per node and token visited, which made lowering cost as much as parsing.
/// The accessors mirror `cvl_syntax::ast`'s (first child of a kind, tokens
/// of a kind), so the two read the same trees the same way.
#[derive(Clone, Copy)]
struct Green<'a> {
    node: &'a GreenNodeData,
    offset: TextSize,
}

impl<'a> Green<'a> {
    fn kind(self) -> SyntaxKind {
        kind_from_raw(self.node.kind())
    }

    fn range(self) -> TextRange {
        TextRange::at(self.offset, self.node.text_len())
    }

    fn nodes(self) -> impl Iterator<Item = Green<'a>> + 'a {
        cvl_syntax::green_children(self.node, self.offset)
            .filter_map(|(child, offset)| child.into_node().map(|node| Green { node, offset }))
    }

    /// The children other than trivia.
    fn elements(self) -> impl Iterator<Item = Element<'a>> + 'a {
        cvl_syntax::significant_green_children(self.node, self.offset).map(|(child, offset)| {
            match child {
                cvl_syntax::NodeOrToken::Node(node) => Element::Node(Green { node, offset }),
                cvl_syntax::NodeOrToken::Token(token) => Element::Token(
                    kind_from_raw(token.kind()),
                    token.text(),
                    TextRange::at(offset, token.text_len()),
                ),
            }
        })
    }

    fn child(self, kind: SyntaxKind) -> Option<Green<'a>> {
        self.nodes().find(|n| n.kind() == kind)
    }

    fn children(self, kind: SyntaxKind) -> impl Iterator<Item = Green<'a>> + 'a {
        self.nodes().filter(move |n| n.kind() == kind)
    }

    /// The tokens of these kinds, with their text and relative range.
    fn tokens(
        self,
        kinds: &'static [SyntaxKind],
    ) -> impl Iterator<Item = (SyntaxKind, &'a str, TextRange)> + 'a {
        cvl_syntax::green_children(self.node, self.offset).filter_map(move |(child, offset)| {
            let token = child.into_token()?;
            let kind = kind_from_raw(token.kind());
            kinds
                .contains(&kind)
                .then(|| (kind, token.text(), TextRange::at(offset, token.text_len())))
        })
    }

    /// The first name among the node's own tokens: an object's name, the
    /// parent in an `extends` clause, a component's type.
    fn ident(self) -> Option<Named> {
        self.names().next()
    }

    /// The names among the node's own tokens: a PATH's segments, the names
    /// of a NAME_LIST.
    fn names(self) -> impl Iterator<Item = Named> + 'a {
        self.tokens(&[SyntaxKind::IDENT])
            .map(|(_, text, range)| Named {
                text: intern(text),
                range,
            })
    }
}

/// A child of a green node other than trivia: a node, or a token's kind,
/// text and range.
#[derive(Clone, Copy)]
enum Element<'a> {
    Node(Green<'a>),
    Token(SyntaxKind, &'a str, TextRange),
}

impl Element<'_> {
    /// The path an assignment's target or a reference spells: a bare name
    /// or a PATH node.
    fn path(self) -> Option<Vec<Named>> {
        match self {
            Element::Token(SyntaxKind::IDENT, text, range) => Some(vec![Named {
                text: intern(text),
                range,
            }]),
            Element::Node(node) if node.kind() == SyntaxKind::PATH => Some(node.names().collect()),
            _ => None,
        }
    }

    fn range(self) -> TextRange {
        match self {
            Element::Node(node) => node.range(),
            Element::Token(_, _, range) => range,
        }
    }
}

/// The names declared by a `NAME_LIST` child.
fn declared_names(list_owner: Green<'_>) -> Vec<Named> {
    list_owner
        .child(SyntaxKind::NAME_LIST)
        .into_iter()
        .flat_map(|list| list.names())
        .collect()
}

/// One object's data, from its green node; ranges relative to its start.
fn lower_object(object: &GreenNodeData) -> Option<ObjectData> {
    use SyntaxKind::*;
    let object = Green {
        node: object,
        offset: TextSize::from(0),
    };
    let name = object.ident()?;
    let parent = object.child(EXTENDS_CLAUSE).and_then(|e| e.ident());
    let mut data = ObjectData {
        name,
        parent,
        vars: Vec::new(),
        components: Vec::new(),
        assigns: Vec::new(),
        range: object.range(),
    };
    let statements = object.child(BODY).into_iter().flat_map(|b| b.nodes());
    for stmt in statements {
        match stmt.kind() {
            VAR_DECL => {
                let mut required = false;
                let mut sensitive = false;
                let mut unknown = Vec::new();
                let attributes = stmt.child(ATTR_LIST).into_iter();
                for (_, text, range) in attributes.flat_map(|a| a.tokens(&[STRING])) {
                    match cvl_syntax::lexer::unescape_string(text).as_str() {
                        "required" => required = true,
                        "sensitive" => sensitive = true,
                        other => unknown.push(Named {
                            text: intern(other),
                            range,
                        }),
                    }
                }
                let decl_range = stmt.range();
                for name in declared_names(stmt) {
                    data.vars.push(VarItem {
                        name,
                        required,
                        sensitive,
                        unknown_attributes: unknown.clone(),
                        decl_range,
                    });
                }
            }
            COMPONENT_DECL => {
                let Some(ty) = stmt.ident() else {
                    continue;
                };
                for name in declared_names(stmt) {
                    data.components.push(ComponentItem {
                        ty: ty.clone(),
                        name,
                    });
                }
            }
            ASSIGN => {
                let Some(target) = stmt.elements().next().and_then(Element::path) else {
                    continue;
                };
                let values = stmt
                    .child(VALUE_LIST)
                    .into_iter()
                    .flat_map(|l| l.elements());
                data.assigns.push(AssignItem {
                    target,
                    values: values.filter_map(lower_value).collect(),
                    range: stmt.range(),
                });
            }
            _ => {}
        }
    }
    Some(data)
}

/// A value element (a string, a path, a map); `None` for anything else.
fn lower_value(value: Element<'_>) -> Option<Expr> {
    use SyntaxKind::*;
    let range = value.range();
    Some(match value {
        Element::Token(STRING, text, _) => Expr::Str {
            value: cvl_syntax::lexer::unescape_string(text),
            range,
        },
        Element::Node(map) if map.kind() == MAP => Expr::Map {
            pairs: map
                .children(PAIR)
                .filter_map(|pair| {
                    // The key is the pair's first element when there is one.
                    let mut elements = pair.elements().peekable();
                    let (text, key_range) = match elements.peek() {
                        Some(&Element::Token(STRING, text, range)) => {
                            (cvl_syntax::lexer::unescape_string(text), range)
                        }
                        Some(&Element::Token(IDENT, text, range)) => (text.to_string(), range),
                        _ => return None,
                    };
                    elements.next();
                    let key = Named {
                        text: intern(&text),
                        range: key_range,
                    };
                    Some((key, elements.find_map(lower_value)?))
                })
                .collect(),
            range,
        },
        other => Expr::Ref {
            path: other.path()?,
            range,
        },
    })
}

const IMPORT_KEYS: [&str; 3] = ["url", "cvl", "version"];

fn lower_import(import: &ast::Import) -> ImportItem {
    let base = TextSize::from(0);
    let mut item = ImportItem {
        name: import.name().map(|n| named(n.syntax(), base)),
        url: None,
        cvl: None,
        version: None,
        problems: Vec::new(),
        range: import.syntax().text_range(),
    };
    let Some(map) = import.map() else {
        return item;
    };
    for pair in map.pairs() {
        let Some(key) = pair.key() else { continue };
        let key_text = key.text();
        let key_range = key.syntax().text_range();
        let value = match pair.value() {
            Some(ast::Value::Literal(l)) => Some((l.value(), l.syntax().text_range())),
            Some(other) => {
                item.problems.push((
                    other.text_range(),
                    format!("the import's `{key_text}` must be a quoted string"),
                    true,
                ));
                None
            }
            None => None,
        };
        match (key_text.as_str(), value) {
            ("url", Some((v, _))) => item.url = Some(v),
            ("cvl", Some((v, _))) => item.cvl = Some(v),
            ("version", Some((v, range))) => {
                if v.parse::<u32>().map_or(true, |n| n == 0) || v.starts_with('+') {
                    item.problems.push((
                        range,
                        format!("version `{v}` is not a positive whole number (e.g. \"3\")"),
                        true,
                    ));
                }
                item.version = Some(Named {
                    text: v.into(),
                    range,
                });
            }
            (k, _) if !IMPORT_KEYS.contains(&k) => {
                let hint = crate::suggest::did_you_mean(k, IMPORT_KEYS.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                item.problems.push((
                    key_range,
                    format!("unknown import key `{k}` (the keys are url, cvl and version){hint}"),
                    false,
                ))
            }
            _ => {}
        }
    }
    let map_range = map.syntax().text_range();
    for (key, present) in [("url", item.url.is_some()), ("cvl", item.cvl.is_some())] {
        if !present {
            item.problems.push((
                map_range,
                format!("the import has no `{key}` (an import needs url and cvl)"),
                true,
            ));
        }
    }
    if let Some(url) = &item.url {
        let scheme_ok = ["file://", "http://", "https://"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok {
            item.problems.push((
                map_range,
                format!("`{url}` is not a repository URL: use file://, http:// or https://"),
                true,
            ));
        }
    }
    item
}
