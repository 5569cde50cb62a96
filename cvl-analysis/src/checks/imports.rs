//! `bad-import`: an import that is malformed, cannot be resolved, fetched
//! or verified, or whose file exports no object; `blacklisted-version`: the
//! version it resolved to is on the administrator's blacklist;
//! `unknown-attribute`: a key of the import map that CVL does not know;
//! `unsigned-repository`: it comes from a repository nobody signed.

use super::{error, warning, FileCtx};
use crate::diagnostics::{Code, LocalDiagnostic};
use crate::resolve;

pub(super) fn check(ctx: &FileCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    let db = ctx.db;
    for import in &ctx.tree.imports {
        for (range, message, is_error) in &import.problems {
            out.push(if *is_error {
                error(Code::BadImport, message, ctx.at(*range))
            } else {
                warning(Code::UnknownAttribute, message, ctx.at(*range))
            });
        }
        let map_is_bad = import.problems.iter().any(|(_, _, is_error)| *is_error);
        let Some(key) = import.key().filter(|_| !map_is_bad) else {
            continue;
        };
        match ctx.file.imports(db).get(&key) {
            Some(Err(message)) => out.push(error(
                Code::BadImport,
                format!("cannot import `{}` from {}: {message}", key.cvl, key.url),
                ctx.at(import.range),
            )),
            None => out.push(error(
                Code::BadImport,
                format!("`{}` from {} was not loaded", key.cvl, key.url),
                ctx.at(import.range),
            )),
            Some(Ok(resolved)) => {
                if let Some(message) = &resolved.blacklisted {
                    let range = import.version.as_ref().map_or(import.range, |v| v.range);
                    out.push(error(Code::BlacklistedVersion, message, ctx.at(range)));
                }
                if let Some(message) = &resolved.unsigned {
                    let range = import.name.as_ref().map_or(import.range, |n| n.range);
                    out.push(warning(Code::UnsignedRepository, message, ctx.at(range)));
                }
                if let Err(message) = resolve::exported_object(db, resolved.file) {
                    out.push(error(
                        Code::BadImport,
                        format!("cannot import from `{}`: {message}", resolved.file.name(db)),
                        ctx.at(import.range),
                    ));
                }
            }
        }
    }
}
