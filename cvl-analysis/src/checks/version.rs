//! `unsupported-version`: the file states a CVL version other than 0.8;
//! and `syntax-error` for a top-level assignment other than the version.

use super::{error, FileCtx};
use crate::diagnostics::{Code, LocalDiagnostic};

const SUPPORTED_VERSION: &str = "0.8";

pub(super) fn check(ctx: &FileCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    for (version, range) in &ctx.tree.versions {
        match version {
            Some(v) if v == SUPPORTED_VERSION => {}
            Some(v) => out.push(error(
                Code::UnsupportedVersion,
                format!("CVL version \"{v}\" is not supported: this toolchain reads CVL 0.8"),
                ctx.at(*range),
            )),
            None => out.push(error(
                Code::UnsupportedVersion,
                "the CVL version must be a string: `CVL = \"0.8\";`",
                ctx.at(*range),
            )),
        }
    }
    for stray in &ctx.tree.stray_assignments {
        out.push(error(
            Code::SyntaxError,
            format!(
                "`{}` cannot be assigned at the top level: only `CVL = \"0.8\";` can; \
                 assignments belong in an object's body",
                stray.text
            ),
            ctx.at(stray.range),
        ));
    }
}
