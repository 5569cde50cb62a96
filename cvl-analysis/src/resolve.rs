//! Name resolution: which object a name denotes in a file (its own objects,
//! its imports, the predefined objects), and inheritance chains.

use std::sync::Arc;

use cvl_syntax::Parse;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::db::{Db, SourceFile};
use crate::item_tree::{lower_parse, ItemTree, ObjectData};
use crate::prelude;

/// An object's name, shared: a [`Def`] is cloned into every parameter,
/// assignment and instance that refers to the object, and keys every
/// per-object query, so its clone is a reference count, not a copy.
pub type Name = Arc<str>;

/// An object definition: the file it is declared in and its name there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Def {
    pub file: SourceFile,
    pub name: Name,
}

/// Never compared with the previous tree (`no_eq`): a new text almost always
/// makes a new tree, and comparing two large trees node by node to find out
/// cost more than what it could save (the item tree is compared instead).
#[salsa::tracked(returns(ref), no_eq)]
pub fn parse(db: &dyn Db, file: SourceFile) -> Parse {
    match file.parsed(db) {
        Some(parsed) => Parse::clone(parsed),
        None => cvl_syntax::parse(file.text(db)),
    }
}

/// The file's summary. Usually the writer has lowered the text already
/// (`RootDatabase::sync_objects`), and this finds it without a syntax tree.
#[salsa::tracked(returns(ref))]
pub fn item_tree(db: &dyn Db, file: SourceFile) -> Arc<ItemTree> {
    let text = file.text(db);
    let mut lowered = db
        .lowered()
        .lock()
        .ok()
        .and_then(|mut l| l.remove(&file))
        .unwrap_or_default();
    let tree = match lowered.for_text(text) {
        Some(tree) => tree,
        None => {
            let tree = lower_parse(parse(db, file), &mut lowered, db.retains_syntax());
            lowered.set_text(text, tree.clone());
            tree
        }
    };
    if let Ok(mut l) = db.lowered().lock() {
        l.insert(file, lowered);
    }
    tree
}

/// One object's declarations; equal across edits of other objects. Read
/// from the file's shape and the object's input, never from the text (see
/// the `db` module), so it does not depend on the rest of the file.
///
/// Not memoized: it reads two inputs (the file's shape, the object's data),
/// which a memo would only copy; the caller depends on them directly.
pub fn object_data(db: &dyn Db, file: SourceFile, name: Name) -> Option<Arc<ObjectData>> {
    let (_, input) = file.shape(db).by_name.get(&*name)?;
    Some(input.data(db).clone())
}

/// Where `def` stands in source order: its file's name and its index among
/// the file's objects (stable across edits inside objects). What picks the
/// one member of a cycle that reports it.
pub fn source_order(db: &dyn Db, def: &Def) -> (String, usize) {
    let index = def
        .file
        .shape(db)
        .by_name
        .get(&*def.name)
        .map_or(usize::MAX, |&(index, _)| index);
    (def.file.name(db).clone(), index)
}

/// The name after `extends`: changes only when that name does.
#[salsa::tracked(returns(ref))]
pub fn parent_name(db: &dyn Db, file: SourceFile, name: Name) -> Option<Name> {
    object_data(db, file, name)
        .as_ref()?
        .parent
        .as_ref()
        .map(|p| p.text.clone())
}

/// What a name in a file's scope stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeEntry {
    Object(Def),
    /// An import: the object it binds, or why it binds nothing.
    Import(Result<Def, String>),
}

/// The names a file can use as types, besides the predefined ones.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileScope {
    pub entries: FxHashMap<Name, ScopeEntry>,
}

#[salsa::tracked(returns(ref))]
pub fn file_scope(db: &dyn Db, file: SourceFile) -> Arc<FileScope> {
    let shape = file.shape(db);
    let mut scope = FileScope::default();
    for (name, key) in &shape.imports {
        let target = match key {
            None => Err("the import is incomplete".to_string()),
            Some(key) => match file.imports(db).get(key) {
                None => Err(format!("`{}` was not loaded", key.url)),
                Some(Err(e)) => Err(e.clone()),
                Some(Ok(resolved)) => exported_object(db, resolved.file)
                    .clone()
                    .map(|name| Def {
                        file: resolved.file,
                        name,
                    })
                    .map_err(|e| format!("{}: {e}", resolved.file.name(db))),
            },
        };
        scope
            .entries
            .entry(name.clone())
            .or_insert(ScopeEntry::Import(target));
    }
    for name in &shape.names {
        scope.entries.entry(name.clone()).or_insert_with(|| {
            ScopeEntry::Object(Def {
                file,
                name: name.clone(),
            })
        });
    }
    Arc::new(scope)
}

/// The object a file exports: the one named like the file's stem, else its
/// only object.
#[salsa::tracked(returns(ref))]
pub fn exported_object(db: &dyn Db, file: SourceFile) -> Result<Name, String> {
    let shape = file.shape(db);
    let file_name = file.name(db);
    let stem = file_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(file_name)
        .trim_end_matches(".cvl");
    exported_of(&shape.names, stem).cloned()
}

/// The rule of [`exported_object`] on a file's object names, in source
/// order, and its stem: for callers that hold text no database has loaded
/// (a test parameters file's appliance).
pub fn exported_of<'a, N: AsRef<str>>(names: &'a [N], stem: &str) -> Result<&'a N, String> {
    if let Some(named) = names.iter().find(|n| n.as_ref() == stem) {
        return Ok(named);
    }
    match names {
        [only] => Ok(only),
        [] => Err("the file declares no object to import".to_string()),
        _ => Err(format!(
            "the file declares several objects and none is named `{stem}` like the file"
        )),
    }
}

/// What a type name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Def(Def),
    /// The prelude's marker that ends inheritance chains.
    Root,
    /// An import that failed: the reason was reported at the import.
    BrokenImport(String),
    Unresolved,
}

/// Resolves a type name as used in `file`.
pub fn resolve_type(db: &dyn Db, file: SourceFile, name: &str) -> Resolved {
    let prelude = db.prelude();
    if file == prelude && name == prelude::ROOT_MARKER {
        return Resolved::Root;
    }
    match file_scope(db, file).entries.get(name) {
        Some(ScopeEntry::Object(def)) => return Resolved::Def(def.clone()),
        Some(ScopeEntry::Import(Ok(def))) => return Resolved::Def(def.clone()),
        Some(ScopeEntry::Import(Err(e))) => return Resolved::BrokenImport(e.clone()),
        None => {}
    }
    if file != prelude && prelude.shape(db).by_name.contains_key(name) {
        return Resolved::Def(Def {
            file: prelude,
            name: name.into(),
        });
    }
    Resolved::Unresolved
}

/// Every type name usable in `file`, for "did you mean".
pub fn type_names(db: &dyn Db, file: SourceFile) -> Vec<String> {
    let mut names: Vec<String> = file_scope(db, file)
        .entries
        .keys()
        .map(|n| n.to_string())
        .collect();
    names.extend(db.prelude().shape(db).names.iter().map(|n| n.to_string()));
    names.sort();
    names.dedup();
    names
}

/// How an inheritance chain ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEnd {
    /// At a predefined root: a whole chain.
    Root,
    /// The last object's parent is itself in the chain.
    Cycle,
    /// The last object's parent does not resolve.
    Broken,
}

/// An object and its ancestors, most derived first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancestry {
    pub chain: Vec<Def>,
    pub end: ChainEnd,
}

/// `def` and its ancestors.
pub fn ancestry<'db>(db: &'db dyn Db, def: &Def) -> &'db Arc<Ancestry> {
    ancestry_query(db, def.file, def.name.clone())
}

#[salsa::tracked(returns(ref))]
fn ancestry_query(db: &dyn Db, file: SourceFile, name: Name) -> Arc<Ancestry> {
    let def = Def { file, name };
    let mut chain = vec![def.clone()];
    let mut seen: FxHashSet<Def> = FxHashSet::default();
    seen.insert(def.clone());
    let mut current = def;
    let end = loop {
        let Some(parent) = parent_name(db, current.file, current.name.clone()) else {
            break ChainEnd::Broken;
        };
        match resolve_type(db, current.file, parent) {
            Resolved::Root => break ChainEnd::Root,
            Resolved::Def(next) => {
                if !seen.insert(next.clone()) {
                    break ChainEnd::Cycle;
                }
                chain.push(next.clone());
                current = next;
            }
            Resolved::BrokenImport(_) | Resolved::Unresolved => break ChainEnd::Broken,
        }
    };
    Arc::new(Ancestry { chain, end })
}

/// What kind of thing an object is, by the predefined object it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Vm,
    Van,
    Interface,
    /// The predefined `Appliance` (or something extending only it).
    Appliance,
    /// A broken chain: unknown.
    Unknown,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Vm => "a VM appliance",
            Kind::Van => "a VAN appliance",
            Kind::Interface => "an Interface",
            Kind::Appliance => "the abstract Appliance",
            Kind::Unknown => "an object of unknown kind",
        }
    }
}

pub fn kind_of(db: &dyn Db, def: &Def) -> Kind {
    let ancestry = ancestry(db, def);
    if ancestry.end != ChainEnd::Root {
        return Kind::Unknown;
    }
    let prelude = db.prelude();
    for d in &ancestry.chain {
        if d.file == prelude {
            match &*d.name {
                "VMAppliance" => return Kind::Vm,
                "VANAppliance" => return Kind::Van,
                "Interface" => return Kind::Interface,
                "Appliance" => return Kind::Appliance,
                _ => {}
            }
        }
    }
    Kind::Unknown
}
