//! The IDE layer: answers in editor terms (byte offsets, labels, markdown)
//! for the language server. Everything here is plain data; `cvl-lsp`
//! converts it to LSP types and UTF-16 positions.
//!
//! At its centre are a file's *occurrences*: every name in it and the
//! object, parameter or component it denotes. Hover, definition,
//! references, highlights, rename and semantic tokens all read them.

use std::sync::Arc;

use cvl_syntax::{SyntaxKind, TextRange, TextSize};

use crate::db::{Db, SourceFile};
use crate::item_tree::{Expr, Named, ObjectData};
use crate::model::{object_model, resolve_path, CompDecl, ParamDecl, Target};
use crate::resolve::{self, item_tree, kind_of, Def, Resolved};

/// What a name denotes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entity {
    Object(Def),
    Param(ParamDecl),
    Component(CompDecl),
}

/// A name in a file and what it denotes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Occurrence {
    pub range: TextRange,
    pub entity: Entity,
    pub is_declaration: bool,
}

/// Every name of `file` that denotes something, in source order.
#[salsa::tracked(returns(ref))]
pub fn occurrences(db: &dyn Db, file: SourceFile) -> Arc<Vec<Occurrence>> {
    let tree = item_tree(db, file);
    let mut out = Vec::new();
    for import in &tree.imports {
        if let Some(name) = &import.name {
            if let Resolved::Def(def) = resolve::resolve_type(db, file, &name.text) {
                out.push(Occurrence {
                    range: name.range,
                    entity: Entity::Object(def),
                    is_declaration: false,
                });
            }
        }
    }
    let mut seen = rustc_hash::FxHashSet::default();
    for object in &tree.objects {
        let data = &object.data;
        if !seen.insert(data.name.text.clone()) {
            continue;
        }
        let def = Def {
            file,
            name: data.name.text.clone(),
        };
        let abs = |r: TextRange| r + object.start;
        out.push(Occurrence {
            range: abs(data.name.range),
            entity: Entity::Object(def.clone()),
            is_declaration: true,
        });
        if let Some(parent) = &data.parent {
            if let Resolved::Def(p) = resolve::resolve_type(db, file, &parent.text) {
                out.push(Occurrence {
                    range: abs(parent.range),
                    entity: Entity::Object(p),
                    is_declaration: false,
                });
            }
        }
        let model = object_model(db, &def);
        for var in &data.vars {
            if let Some(p) = model.param(&var.name.text).filter(|p| p.owner == def) {
                out.push(Occurrence {
                    range: abs(var.name.range),
                    entity: Entity::Param(p.clone()),
                    is_declaration: true,
                });
            }
        }
        for comp in &data.components {
            if let Resolved::Def(ty) = resolve::resolve_type(db, file, &comp.ty.text) {
                out.push(Occurrence {
                    range: abs(comp.ty.range),
                    entity: Entity::Object(ty),
                    is_declaration: false,
                });
            }
            if let Some(c) = model.component(&comp.name.text).filter(|c| c.owner == def) {
                out.push(Occurrence {
                    range: abs(comp.name.range),
                    entity: Entity::Component(c.clone()),
                    is_declaration: true,
                });
            }
        }
        for assign in &data.assigns {
            path_occurrences(db, &def, &assign.target, object.start, &mut out);
            let mut refs = Vec::new();
            assign.values.iter().for_each(|v| v.refs(&mut refs));
            for (path, _) in refs {
                path_occurrences(db, &def, &path, object.start, &mut out);
            }
        }
    }
    out.sort_by_key(|o| o.range.start());
    Arc::new(out)
}

/// Each segment of a dotted path resolved against `def`.
fn path_occurrences(
    db: &dyn Db,
    def: &Def,
    path: &[Named],
    base: TextSize,
    out: &mut Vec<Occurrence>,
) {
    for i in 0..path.len() {
        let entity = match resolve_path(db, def, &path[..=i]) {
            Ok(Target::Param(p)) => Entity::Param(p),
            Ok(Target::Component(c)) => Entity::Component(c),
            Err(_) => break,
        };
        out.push(Occurrence {
            range: path[i].range + base,
            entity,
            is_declaration: false,
        });
    }
}

/// The occurrence under `offset` (touching it from either side).
pub fn occurrence_at(db: &dyn Db, file: SourceFile, offset: TextSize) -> Option<Occurrence> {
    occurrences(db, file)
        .iter()
        .find(|o| o.range.contains_inclusive(offset))
        .cloned()
}

/// A place to navigate to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NavTarget {
    pub file: SourceFile,
    /// The name at the target.
    pub range: TextRange,
}

fn object_start(db: &dyn Db, def: &Def) -> TextSize {
    item_tree(db, def.file)
        .object(&def.name)
        .map_or(TextSize::from(0), |o| o.start)
}

fn data(db: &dyn Db, def: &Def) -> Option<Arc<ObjectData>> {
    resolve::object_data(db, def.file, def.name.clone()).clone()
}

/// Where an entity is declared.
pub fn declaration(db: &dyn Db, entity: &Entity) -> Option<NavTarget> {
    let (owner, range) = match entity {
        Entity::Object(def) => (def, data(db, def)?.name.range),
        Entity::Param(p) => (&p.owner, p.var(db).name.range),
        Entity::Component(c) => (&c.owner, c.item(db).name.range),
    };
    Some(NavTarget {
        file: owner.file,
        range: range + object_start(db, owner),
    })
}

pub fn goto_definition(db: &dyn Db, file: SourceFile, offset: TextSize) -> Option<NavTarget> {
    declaration(db, &occurrence_at(db, file, offset)?.entity)
}

/// Every occurrence of the entity under `offset` in `files`, the declaration
/// included.
pub fn references(
    db: &dyn Db,
    file: SourceFile,
    offset: TextSize,
    files: &[SourceFile],
) -> Vec<NavTarget> {
    let Some(target) = occurrence_at(db, file, offset) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(decl) = declaration(db, &target.entity) {
        out.push(decl);
    }
    for &f in files {
        for o in occurrences(db, f).iter() {
            let nav = NavTarget {
                file: f,
                range: o.range,
            };
            if o.entity == target.entity && !out.contains(&nav) {
                out.push(nav);
            }
        }
    }
    out
}

/// Hover text (markdown) for the name under `offset`.
pub fn hover(db: &dyn Db, file: SourceFile, offset: TextSize) -> Option<(TextRange, String)> {
    let occurrence = occurrence_at(db, file, offset)?;
    let text = match &occurrence.entity {
        Entity::Object(def) => {
            let mut text = describe_object(db, def);
            // On an import's name: where the import led.
            for import in &item_tree(db, file).imports {
                let on_name = import
                    .name
                    .as_ref()
                    .is_some_and(|n| n.range == occurrence.range);
                let resolved = import.key().and_then(|k| file.imports(db).get(&k).cloned());
                if let (true, Some(Ok(r))) = (on_name, resolved) {
                    text.push_str(&format!("\n\nimported: {}", r.detail));
                }
            }
            text
        }
        Entity::Param(p) => describe_param(db, file, p),
        Entity::Component(c) => {
            let item = c.item(db);
            let ty =
                c.ty.as_ref()
                    .map_or("an unknown type".to_string(), |t| describe_object(db, t));
            format!(
                "```cvl\n{} {};\n```\ncomponent of `{}`\n\n---\n{ty}",
                item.ty.text, item.name.text, c.owner.name
            )
        }
    };
    Some((occurrence.range, text))
}

fn describe_object(db: &dyn Db, def: &Def) -> String {
    let chain: Vec<&str> = resolve::ancestry(db, def)
        .chain
        .iter()
        .map(|d| d.name.as_ref())
        .collect();
    let mut text = format!(
        "```cvl\n{}\n```\n{}",
        chain.join(" extends "),
        kind_of(db, def).describe()
    );
    if def.file == db.prelude() {
        text.push_str(", predefined (paper Figure 1)");
    } else {
        text.push_str(&format!(", declared in `{}`", def.file.name(db)));
    }
    text
}

fn describe_param(db: &dyn Db, file: SourceFile, p: &ParamDecl) -> String {
    let var = p.var(db);
    let mut attrs = String::new();
    if p.required {
        attrs.push_str("\"required\" ");
    }
    if p.sensitive {
        attrs.push_str("\"sensitive\" ");
    }
    let mut text = format!(
        "```cvl\nvar {attrs}{};\n```\nparameter of `{}`",
        var.name.text, p.owner.name
    );
    if crate::prelude::UTILITY_ALLOCATED.contains(&&*var.name.text)
        && p.owner.file == db.prelude()
        && &*p.owner.name == "Interface"
    {
        text.push_str(", allocated by the utility at deploy time");
    }
    // Its value in each object of this file that has it.
    let mut values = Vec::new();
    for object in &item_tree(db, file).objects {
        let def = Def {
            file,
            name: object.data.name.text.clone(),
        };
        let ev = crate::eval::evaluate(db, &def);
        for slot in &ev.slots {
            if slot.decl != *p {
                continue;
            }
            let path = ev.dotted(slot);
            let value = slot.value.display();
            let origin = ev
                .origin(db, slot)
                .map(|l| {
                    let span = l.span(db);
                    let text = l.file.text(db);
                    let (line, _) = cvl_syntax::line_col(text, span.range.start());
                    format!(" (assigned in `{}`, line {line})", span.file)
                })
                .unwrap_or_default();
            values.push(format!("- in `{}`: `{path}` = {value}{origin}", def.name));
        }
        if values.len() >= 12 {
            break;
        }
    }
    if !values.is_empty() {
        text.push_str("\n\n---\nfinal values:\n");
        text.push_str(&values.join("\n"));
    }
    text
}

/// A completion candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionItem {
    pub label: String,
    pub kind: CompletionKind,
    pub detail: String,
    pub documentation: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionKind {
    Parameter,
    Component,
    Type,
    Keyword,
    Attribute,
    ImportKey,
}

/// What fits at `offset`, judged from the tokens before it.
pub fn completions(db: &dyn Db, file: SourceFile, offset: TextSize) -> Vec<CompletionItem> {
    let parse = resolve::parse(db, file);
    let root = parse.syntax();
    // The significant tokens before the cursor (skipping the word being typed).
    let mut before = Vec::new();
    let mut token = root.token_at_offset(offset).left_biased();
    if let Some(t) = &token {
        if t.kind() == SyntaxKind::IDENT && t.text_range().end() >= offset {
            token = t.prev_token();
        }
    }
    while let Some(t) = token {
        if !t.kind().is_trivia() {
            before.push(t.clone());
            if before.len() == 40 {
                break;
            }
        }
        token = t.prev_token();
    }
    let kinds: Vec<SyntaxKind> = before.iter().map(|t| t.kind()).collect();
    let tree = item_tree(db, file);
    let object = tree
        .objects
        .iter()
        .find(|o| (o.data.range + o.start).contains_inclusive(offset))
        .map(|o| Def {
            file,
            name: o.data.name.text.clone(),
        });
    let in_import = before
        .iter()
        .any(|t| t.parent_ancestors().any(|n| n.kind() == SyntaxKind::IMPORT))
        && !kinds.contains(&SyntaxKind::SEMICOLON);
    let types = || {
        resolve::type_names(db, file)
            .into_iter()
            .filter(|n| n != "Appliance")
            .map(|n| CompletionItem {
                label: n.clone(),
                kind: CompletionKind::Type,
                detail: "object".into(),
                documentation: None,
            })
            .collect::<Vec<_>>()
    };
    match kinds.first() {
        Some(SyntaxKind::EXTENDS_KW) => {
            // Not the object being declared: it cannot extend itself.
            let declared = before.get(1).filter(|t| t.kind() == SyntaxKind::IDENT);
            let mut types = types();
            types.retain(|c| declared.is_none_or(|d| d.text() != c.label));
            return types;
        }
        Some(SyntaxKind::VAR_KW | SyntaxKind::STRING) if in_attributes(&before) => {
            return ["required", "sensitive"]
                .iter()
                .map(|a| CompletionItem {
                    label: format!("\"{a}\""),
                    kind: CompletionKind::Attribute,
                    detail: "attribute".into(),
                    documentation: Some(match *a {
                        "required" => {
                            "Must have a value before the appliance can be started.".into()
                        }
                        _ => "Never stored unencrypted: the user agent supplies it at deploy time."
                            .into(),
                    }),
                })
                .collect();
        }
        Some(SyntaxKind::L_CURLY | SyntaxKind::COMMA) if in_import => {
            return [
                ("url", "the repository: file://, http:// or https://"),
                ("cvl", "the CVL file in a version"),
                ("version", "a version number; absent: the latest"),
            ]
            .iter()
            .map(|(k, doc)| CompletionItem {
                label: k.to_string(),
                kind: CompletionKind::ImportKey,
                detail: "import key".into(),
                documentation: Some(doc.to_string()),
            })
            .collect();
        }
        _ => {}
    }
    let Some(def) = object else { return Vec::new() };
    // After `a.b.`: the members of that component.
    let mut container = def.clone();
    if kinds.first() == Some(&SyntaxKind::DOT) {
        let mut path = Vec::new();
        let mut i = 1;
        while i < before.len() && before[i].kind() == SyntaxKind::IDENT {
            path.push(Named {
                text: before[i].text().into(),
                range: Default::default(),
            });
            if before.get(i + 1).map(|t| t.kind()) != Some(SyntaxKind::DOT) {
                break;
            }
            i += 2;
        }
        path.reverse();
        match resolve_path(db, &def, &path) {
            Ok(Target::Component(c)) => match c.ty {
                Some(ty) => container = ty,
                None => return Vec::new(),
            },
            _ => return Vec::new(),
        }
    }
    let model = object_model(db, &container);
    let mut items = Vec::new();
    for (name, p) in model.params() {
        let mut attrs = Vec::new();
        if p.required {
            attrs.push("\"required\"");
        }
        if p.sensitive {
            attrs.push("\"sensitive\"");
        }
        items.push(CompletionItem {
            label: name.to_string(),
            kind: CompletionKind::Parameter,
            detail: format!(
                "var {}{name} ({})",
                attrs.iter().map(|a| format!("{a} ")).collect::<String>(),
                p.owner.name
            ),
            documentation: Some(format!("parameter declared in `{}`", p.owner.name)),
        });
    }
    for (name, c) in model.components() {
        let ty =
            c.ty.as_ref()
                .map_or("?".to_string(), |t| t.name.to_string());
        items.push(CompletionItem {
            label: name.to_string(),
            kind: CompletionKind::Component,
            detail: format!("{ty} {name}"),
            documentation: Some(format!("component declared in `{}`", c.owner.name)),
        });
    }
    let at_statement_start = matches!(
        kinds.first(),
        Some(SyntaxKind::L_CURLY | SyntaxKind::SEMICOLON | SyntaxKind::R_CURLY)
    );
    if at_statement_start && kinds.first() != Some(&SyntaxKind::DOT) {
        items.push(CompletionItem {
            label: "var".into(),
            kind: CompletionKind::Keyword,
            detail: "declare parameters".into(),
            documentation: Some("`var \"required\" name;`".into()),
        });
        items.extend(types());
    }
    items
}

/// Is the cursor where `var` attributes go: right after `var` or after an
/// attribute string?
fn in_attributes(before: &[cvl_syntax::SyntaxToken]) -> bool {
    let Some(last) = before.first() else {
        return false;
    };
    last.kind() == SyntaxKind::VAR_KW
        || last
            .parent()
            .is_some_and(|p| p.kind() == SyntaxKind::ATTR_LIST)
}

/// An entry of a file's outline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub detail: String,
    pub kind: SymbolKind,
    pub range: TextRange,
    pub selection: TextRange,
    pub children: Vec<Symbol>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolKind {
    Object,
    Parameter,
    Component,
    Import,
}

pub fn document_symbols(db: &dyn Db, file: SourceFile) -> Vec<Symbol> {
    let tree = item_tree(db, file);
    let mut out = Vec::new();
    for import in &tree.imports {
        if let Some(name) = &import.name {
            out.push(Symbol {
                name: name.text.to_string(),
                detail: import.url.clone().unwrap_or_default(),
                kind: SymbolKind::Import,
                range: import.range,
                selection: name.range,
                children: Vec::new(),
            });
        }
    }
    for object in &tree.objects {
        let d = &object.data;
        let abs = |r: TextRange| r + object.start;
        let mut children: Vec<Symbol> = d
            .vars
            .iter()
            .map(|v| Symbol {
                name: v.name.text.to_string(),
                detail: [
                    v.required.then_some("required"),
                    v.sensitive.then_some("sensitive"),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
                kind: SymbolKind::Parameter,
                range: abs(v.decl_range),
                selection: abs(v.name.range),
                children: Vec::new(),
            })
            .collect();
        children.extend(d.components.iter().map(|c| Symbol {
            name: c.name.text.to_string(),
            detail: c.ty.text.to_string(),
            kind: SymbolKind::Component,
            range: abs(TextRange::new(c.ty.range.start(), c.name.range.end())),
            selection: abs(c.name.range),
            children: Vec::new(),
        }));
        children.sort_by_key(|s| s.range.start());
        out.push(Symbol {
            name: d.name.text.to_string(),
            detail: d
                .parent
                .as_ref()
                .map(|p| format!("extends {}", p.text))
                .unwrap_or_default(),
            kind: SymbolKind::Object,
            range: abs(d.range),
            selection: abs(d.name.range),
            children,
        });
    }
    out
}

/// Ranges an editor can fold: object bodies, multi-line maps and imports,
/// block comments.
pub fn folding_ranges(db: &dyn Db, file: SourceFile) -> Vec<TextRange> {
    let root = resolve::parse(db, file).syntax();
    let text = file.text(db);
    let multiline = |r: TextRange| text[r].contains('\n');
    let mut out = Vec::new();
    for element in root.descendants_with_tokens() {
        let range = element.text_range();
        let foldable = matches!(
            element.kind(),
            SyntaxKind::BODY | SyntaxKind::MAP | SyntaxKind::IMPORT | SyntaxKind::BLOCK_COMMENT
        );
        if foldable && multiline(range) {
            out.push(range);
        }
    }
    out
}

/// Token classes for semantic highlighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Highlight {
    Keyword,
    String,
    Comment,
    Type,
    Parameter,
    Component,
    Operator,
}

/// Every highlighted range of `file`, in order, without overlaps.
pub fn highlights(db: &dyn Db, file: SourceFile) -> Vec<(TextRange, Highlight)> {
    let root = resolve::parse(db, file).syntax();
    let named: rustc_hash::FxHashMap<TextSize, Highlight> = occurrences(db, file)
        .iter()
        .map(|o| {
            let h = match o.entity {
                Entity::Object(_) => Highlight::Type,
                Entity::Param(_) => Highlight::Parameter,
                Entity::Component(_) => Highlight::Component,
            };
            (o.range.start(), h)
        })
        .collect();
    let mut out = Vec::new();
    for token in root
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
    {
        let h = match token.kind() {
            SyntaxKind::IMPORT_KW | SyntaxKind::EXTENDS_KW | SyntaxKind::VAR_KW => {
                Some(Highlight::Keyword)
            }
            SyntaxKind::STRING => Some(Highlight::String),
            SyntaxKind::LINE_COMMENT | SyntaxKind::BLOCK_COMMENT => Some(Highlight::Comment),
            SyntaxKind::EQ | SyntaxKind::FAT_ARROW => Some(Highlight::Operator),
            SyntaxKind::IDENT => named.get(&token.text_range().start()).copied(),
            _ => None,
        };
        if let Some(h) = h {
            out.push((token.text_range(), h));
        }
    }
    out
}

/// Inline hints: each assignment's final value in its object, when it
/// differs from what is written (a reference, a map, an override).
pub fn inlay_hints(db: &dyn Db, file: SourceFile) -> Vec<(TextSize, String)> {
    let tree = item_tree(db, file);
    let mut out = Vec::new();
    for object in &tree.objects {
        let def = Def {
            file,
            name: object.data.name.text.clone(),
        };
        let ev = crate::eval::evaluate(db, &def);
        for assign in &object.data.assigns {
            if assign.values.iter().all(|v| matches!(v, Expr::Str { .. })) {
                continue; // the literal says it all
            }
            let path: Vec<&str> = assign.target.iter().map(|n| n.text.as_ref()).collect();
            let Some(slot) = ev.slot(&path.join(".")) else {
                continue;
            };
            let label = slot.value.display();
            out.push((assign.range.end() + object.start, format!(" ⇒ {label}")));
        }
    }
    out
}

/// The edits of a rename: each place to replace with the new name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub new_name: String,
    pub targets: Vec<NavTarget>,
}

/// Renames the entity under `offset` everywhere in `files` (the files the
/// user may edit). Refused, with the reason, when `new_name` is not a CVL
/// name or when the entity is declared or used outside `files`.
pub fn rename(
    db: &dyn Db,
    file: SourceFile,
    offset: TextSize,
    new_name: &str,
    files: &[SourceFile],
) -> Result<Rename, String> {
    let valid = new_name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && new_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{new_name}` is not a CVL name (a letter, then letters, digits, _)"
        ));
    }
    let targets = references(db, file, offset, files);
    if targets.is_empty() {
        return Err("there is no name to rename here".to_string());
    }
    if let Some(outside) = targets.iter().find(|t| !files.contains(&t.file)) {
        return Err(format!(
            "it is declared in `{}`, which is not part of this workspace (a published or predefined file) and cannot be renamed",
            outside.file.name(db)
        ));
    }
    Ok(Rename {
        new_name: new_name.to_string(),
        targets,
    })
}

/// An object found by a workspace-wide search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSymbol {
    pub name: String,
    pub target: NavTarget,
}

/// The objects of `files` whose name contains `query`, case ignored.
pub fn workspace_symbols(db: &dyn Db, query: &str, files: &[SourceFile]) -> Vec<WorkspaceSymbol> {
    let query = query.to_lowercase();
    let mut out = Vec::new();
    for &file in files {
        for object in &item_tree(db, file).objects {
            let name = &object.data.name;
            if name.text.to_lowercase().contains(&query) {
                out.push(WorkspaceSymbol {
                    name: name.text.to_string(),
                    target: NavTarget {
                        file,
                        range: name.range + object.start,
                    },
                });
            }
        }
    }
    out
}

/// The fixes of `file`'s diagnostics that touch `range` and edit only
/// `file`: the quick fixes an editor offers there.
pub fn code_actions(
    db: &dyn Db,
    file: SourceFile,
    range: TextRange,
) -> Vec<crate::diagnostics::Fix> {
    let own = file.name(db);
    let options = crate::CheckOptions::default();
    crate::file_diagnostics(db, file, &options)
        .into_iter()
        .filter_map(|d| {
            let fix = d.fix?;
            let touches = &d.span.file == own
                && (d.span.range.intersect(range).is_some()
                    || d.span.range.contains_inclusive(range.start()));
            let edits_here = fix.edits.iter().all(|(span, _)| &span.file == own);
            (touches && edits_here).then_some(fix)
        })
        .collect()
}

/// An object as a type hierarchy shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeItem {
    pub def: Def,
    /// `VM appliance`, `VAN appliance`, ...
    pub kind: &'static str,
    /// Its name, where it is declared.
    pub name_range: TextRange,
    /// The whole object.
    pub range: TextRange,
}

/// The object named under `offset` (its declaration, an `extends`, a
/// component's type, an import's name).
pub fn type_at(db: &dyn Db, file: SourceFile, offset: TextSize) -> Option<TypeItem> {
    match occurrence_at(db, file, offset)?.entity {
        Entity::Object(def) => type_item(db, &def),
        _ => None,
    }
}

/// A type hierarchy's item for `def`; `None` for what has no declaration
/// to show (the prelude's root marker).
pub fn type_item(db: &dyn Db, def: &Def) -> Option<TypeItem> {
    let data = data(db, def)?;
    let start = object_start(db, def);
    let kind = match kind_of(db, def) {
        resolve::Kind::Vm => "VM appliance",
        resolve::Kind::Van => "VAN appliance",
        resolve::Kind::Interface => "interface",
        resolve::Kind::Appliance => "appliance",
        resolve::Kind::Unknown => "object",
    };
    Some(TypeItem {
        def: def.clone(),
        kind,
        name_range: data.name.range + start,
        range: data.range + start,
    })
}

/// What `def` extends: its parent, through imports and the prelude (one
/// item: CVL has single inheritance).
pub fn supertypes(db: &dyn Db, def: &Def) -> Vec<TypeItem> {
    let Some(parent) = data(db, def).and_then(|d| d.parent.clone()) else {
        return Vec::new();
    };
    match resolve::resolve_type(db, def.file, &parent.text) {
        Resolved::Def(p) => type_item(db, &p).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The objects in `files` that extend `def` directly.
pub fn subtypes(db: &dyn Db, def: &Def, files: &[SourceFile]) -> Vec<TypeItem> {
    let mut out = Vec::new();
    for &file in files {
        for object in &item_tree(db, file).objects {
            let Some(parent) = &object.data.parent else {
                continue;
            };
            if let Resolved::Def(p) = resolve::resolve_type(db, file, &parent.text) {
                if &p == def {
                    let child = Def {
                        file,
                        name: object.data.name.text.clone(),
                    };
                    if let Some(item) = type_item(db, &child) {
                        if !out.contains(&item) {
                            out.push(item);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Every component declaration in `files` whose type is `def`: where the
/// appliance is used (`DNS d;`), as the name of the component.
pub fn components_of_type(db: &dyn Db, def: &Def, files: &[SourceFile]) -> Vec<NavTarget> {
    let mut out = Vec::new();
    for &file in files {
        for (ty, range) in component_types(db, file).iter() {
            if ty == def {
                out.push(NavTarget {
                    file,
                    range: *range,
                });
            }
        }
    }
    out
}

/// Each component declaration of `file`: its type and its name's range.
/// Cached per file: a workspace-wide question (who uses `DNS`?) re-reads
/// only the files an edit touched.
#[salsa::tracked(returns(ref))]
pub fn component_types(db: &dyn Db, file: SourceFile) -> Arc<Vec<(Def, TextRange)>> {
    let mut out = Vec::new();
    for object in &item_tree(db, file).objects {
        for comp in &object.data.components {
            if let Resolved::Def(ty) = resolve::resolve_type(db, file, &comp.ty.text) {
                out.push((ty, comp.name.range + object.start));
            }
        }
    }
    Arc::new(out)
}
