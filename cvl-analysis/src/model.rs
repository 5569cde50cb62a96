//! An object's full model through its inheritance chain: every parameter and
//! component it has (its own and inherited), and the assignments that run
//! when it is built, parent first and in source order. Also resolution of
//! dotted paths (`c.i.x`) against models.

use std::sync::Arc;

use crate::db::{Db, SourceFile};
use crate::item_tree::{AssignItem, ComponentItem, Named, ObjectData, VarItem};
use crate::resolve::{self, ancestry, kind_of, object_data, ChainEnd, Def, Kind, Name, Resolved};

/// A parameter's declaration: the object declaring it and its index there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParamDecl {
    pub owner: Def,
    pub index: usize,
    pub required: bool,
    pub sensitive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompDecl {
    pub owner: Def,
    pub index: usize,
    pub ty: Option<Def>,
}

/// One assignment of the chain: the object holding it and its index there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssignRef {
    pub owner: Def,
    pub index: usize,
}

/// What an object has through its inheritance chain. What it inherits is
/// its parent's model, shared (`base`), not copied: ten thousand appliances
/// extending `VMAppliance` hold one copy of what `VMAppliance` declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectModel {
    pub def: Def,
    pub kind: Kind,
    /// The parent's model, whose members come first; `None` at the top of
    /// a chain, and for a chain that loops (whose members are all own).
    base: Option<Arc<ObjectModel>>,
    /// Members declared here and not above, in declaration order.
    params: Vec<(Name, ParamDecl)>,
    components: Vec<(Name, CompDecl)>,
    /// The assignments written here, in source order.
    assigns: Vec<AssignRef>,
}

/// `def`'s model through its inheritance chain.
pub fn object_model<'db>(db: &'db dyn Db, def: &Def) -> &'db Arc<ObjectModel> {
    object_model_query(db, def.file, def.name.clone())
}

impl ObjectModel {
    /// The models of the chain, from the top down to this one.
    fn chain(&self) -> Vec<&ObjectModel> {
        let mut chain = vec![self];
        while let Some(base) = &chain[chain.len() - 1].base {
            chain.push(base);
        }
        chain.reverse();
        chain
    }

    /// The member of this name in the list `members` picks, declared here
    /// or above.
    fn find<T>(&self, members: fn(&Self) -> &[(Name, T)], name: &str) -> Option<&T> {
        let mut model = Some(self);
        while let Some(m) = model {
            if let Some((_, member)) = members(m).iter().find(|(n, _)| &**n == name) {
                return Some(member);
            }
            model = m.base.as_deref();
        }
        None
    }

    /// The parameter of this name, declared here or above.
    pub fn param(&self, name: &str) -> Option<&ParamDecl> {
        self.find(|m| &m.params, name)
    }

    /// The component of this name, declared here or above.
    pub fn component(&self, name: &str) -> Option<&CompDecl> {
        self.find(|m| &m.components, name)
    }

    /// Every parameter in declaration order, parents' first.
    pub fn params(&self) -> impl Iterator<Item = (&Name, &ParamDecl)> {
        self.chain()
            .into_iter()
            .flat_map(|m| m.params.iter().map(|(n, p)| (n, p)))
    }

    /// Every component in declaration order, parents' first.
    pub fn components(&self) -> impl Iterator<Item = (&Name, &CompDecl)> {
        self.chain()
            .into_iter()
            .flat_map(|m| m.components.iter().map(|(n, c)| (n, c)))
    }

    /// The assignments that build the object, in execution order (parents'
    /// first).
    pub fn assigns(&self) -> impl Iterator<Item = &AssignRef> {
        self.chain().into_iter().flat_map(|m| m.assigns.iter())
    }

    /// Has the object a parameter or component of this name?
    pub fn declares(&self, name: &str) -> bool {
        self.param(name).is_some() || self.component(name).is_some()
    }
}

#[salsa::tracked(returns(ref))]
fn object_model_query(db: &dyn Db, file: SourceFile, name: Name) -> Arc<ObjectModel> {
    let def = Def { file, name };
    let ancestry = ancestry(db, &def);
    // The parent's own chain is this one's tail, except in a loop.
    let (base, owners) = match (ancestry.end != ChainEnd::Cycle, ancestry.chain.get(1)) {
        (true, Some(parent)) => (Some(object_model(db, parent).clone()), &ancestry.chain[..1]),
        _ => (None, &ancestry.chain[..]),
    };
    let mut model = ObjectModel {
        def: def.clone(),
        kind: kind_of(db, &def),
        base,
        params: Vec::new(),
        components: Vec::new(),
        assigns: Vec::new(),
    };
    for owner in owners.iter().rev() {
        let Some(data) = object_data(db, owner.file, owner.name.clone()) else {
            continue;
        };
        for (index, var) in data.vars.iter().enumerate() {
            if model.declares(&var.name.text) {
                continue; // a duplicate, reported by the checks
            }
            let decl = ParamDecl {
                owner: owner.clone(),
                index,
                required: var.required,
                sensitive: var.sensitive,
            };
            model.params.push((var.name.text.as_ref().into(), decl));
        }
        for (index, comp) in data.components.iter().enumerate() {
            if model.declares(&comp.name.text) {
                continue;
            }
            let ty = match resolve::resolve_type(db, owner.file, &comp.ty.text) {
                Resolved::Def(d) => Some(d),
                _ => None,
            };
            let decl = CompDecl {
                owner: owner.clone(),
                index,
                ty,
            };
            model
                .components
                .push((comp.name.text.as_ref().into(), decl));
        }
        for index in 0..data.assigns.len() {
            model.assigns.push(AssignRef {
                owner: owner.clone(),
                index,
            });
        }
    }
    Arc::new(model)
}

/// The data of the object a reference points into. The owner always has
/// data: models are built only from objects that do.
pub fn data_of(db: &dyn Db, def: &Def) -> Arc<ObjectData> {
    object_data(db, def.file, def.name.clone())
        .clone()
        .unwrap_or_else(|| panic!("no data for {def:?}"))
}

/// One item of an object's data, read in place: the data is shared, the
/// item never copied (copying an assignment's whole value tree on every
/// look was a tenth of checking a large file).
pub struct ItemRef<T: 'static> {
    data: Arc<ObjectData>,
    index: usize,
    pick: fn(&ObjectData) -> &[T],
}

impl<T> std::ops::Deref for ItemRef<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &(self.pick)(&self.data)[self.index]
    }
}

impl ParamDecl {
    pub fn var(&self, db: &dyn Db) -> ItemRef<VarItem> {
        ItemRef {
            data: data_of(db, &self.owner),
            index: self.index,
            pick: |d| &d.vars,
        }
    }
}

impl CompDecl {
    pub fn item(&self, db: &dyn Db) -> ItemRef<ComponentItem> {
        ItemRef {
            data: data_of(db, &self.owner),
            index: self.index,
            pick: |d| &d.components,
        }
    }
}

impl AssignRef {
    pub fn item(&self, db: &dyn Db) -> ItemRef<AssignItem> {
        ItemRef {
            data: data_of(db, &self.owner),
            index: self.index,
            pick: |d| &d.assigns,
        }
    }
}

/// What a dotted path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Param(ParamDecl),
    Component(CompDecl),
}

/// Why a path names nothing: the segment that failed and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub segment: usize,
    pub message: String,
    /// Set when the segment's component has a type that did not resolve (or
    /// an object that failed): the cause was reported elsewhere.
    pub consequential: bool,
    /// The close name the segment was probably meant to be.
    pub suggestion: Option<String>,
}

/// Resolves `path` against `def`'s model: every segment but the last must be
/// a component; the last is a parameter or a component.
pub fn resolve_path(db: &dyn Db, def: &Def, path: &[Named]) -> Result<Target, PathError> {
    let mut current = def.clone();
    for (i, segment) in path.iter().enumerate() {
        let model = object_model(db, &current);
        let last = i + 1 == path.len();
        if let Some(param) = model.param(&segment.text) {
            if last {
                return Ok(Target::Param(param.clone()));
            }
            return Err(PathError {
                segment: i + 1,
                message: format!(
                    "`{}` is a parameter, not a component: it has no `{}`",
                    segment.text,
                    path[i + 1].text
                ),
                consequential: false,
                suggestion: None,
            });
        }
        if let Some(comp) = model.component(&segment.text) {
            if last {
                return Ok(Target::Component(comp.clone()));
            }
            match &comp.ty {
                Some(ty) => current = ty.clone(),
                None => {
                    return Err(PathError {
                        segment: i + 1,
                        message: format!("the type of component `{}` is unknown", segment.text),
                        consequential: true,
                        suggestion: None,
                    })
                }
            }
            continue;
        }
        let names = model.params().map(|(n, _)| &**n);
        let names = names.chain(model.components().map(|(n, _)| &**n));
        let suggestion = crate::suggest::did_you_mean(&segment.text, names).map(str::to_string);
        let hint = suggestion
            .as_ref()
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(PathError {
            segment: i,
            message: format!(
                "`{}` has no parameter or component `{}`{hint}",
                model.def.name, segment.text
            ),
            consequential: model.kind == Kind::Unknown,
            suggestion,
        });
    }
    Err(PathError {
        segment: 0,
        message: "an empty path".to_string(),
        consequential: true,
        suggestion: None,
    })
}
