//! `inheritance-cycle`: objects that extend each other in a cycle. One
//! cycle, one diagnostic: its first member in source order reports it,
//! naming the whole cycle, with a label at every other member's `extends`.

use super::{error, ObjectCtx};
use crate::diagnostics::{Code, Loc, LocalDiagnostic};
use crate::resolve::{self, ancestry, object_data, ChainEnd, Resolved};

pub(super) fn check(ctx: &ObjectCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    let (db, def) = (ctx.db, ctx.def);
    let Some(parent) = &ctx.data.parent else {
        return;
    };
    let chain = ancestry(db, def);
    if chain.end != ChainEnd::Cycle {
        return;
    }
    let last = chain.chain.last().expect("a chain holds its object");
    let closes_on_self = resolve::parent_name(db, last.file, last.name.clone())
        .as_ref()
        .map(|p| resolve::resolve_type(db, last.file, p))
        == Some(Resolved::Def(def.clone()));
    let first = closes_on_self
        && chain
            .chain
            .iter()
            .map(|d| resolve::source_order(db, d))
            .min()
            == Some(resolve::source_order(db, def));
    if !first {
        return;
    }
    let names: Vec<&str> = chain.chain.iter().map(|d| d.name.as_ref()).collect();
    let mut diag = error(
        Code::InheritanceCycle,
        format!(
            "inheritance cycle: {} extends {}",
            names.join(" extends "),
            def.name
        ),
        ctx.at(parent.range),
    );
    for other in chain.chain.iter().skip(1) {
        if let Some(d) = object_data(db, other.file, other.name.clone()) {
            if let Some(p) = &d.parent {
                diag = diag.label(
                    Loc::in_object(other, p.range),
                    format!("`{}` extends `{}` here", other.name, p.text),
                );
            }
        }
    }
    out.push(diag);
}
