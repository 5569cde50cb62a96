//! `unknown-attribute`: a `var` attribute other than "required" and
//! "sensitive" (a warning: the parameter is declared all the same).

use super::{warning, ObjectCtx};
use crate::diagnostics::{Code, LocalDiagnostic};

pub(super) fn check(ctx: &ObjectCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    for var in &ctx.data.vars {
        for attr in &var.unknown_attributes {
            out.push(warning(
                Code::UnknownAttribute,
                format!(
                    "unknown attribute \"{}\": the attributes are \"required\" and \"sensitive\"",
                    attr.text
                ),
                ctx.at(attr.range),
            ));
        }
    }
}
