//! The plan in the editor: above each deployed object a code lens with what
//! applying it would do against the utility's state (`2 to start · 1 to
//! update`), a hint at each component it concerns (`update: DNS 3 → 4`),
//! the actions in order on hover; above every appliance a lens saying where
//! it is used and what runs it. The server's commands `cvl.planText` and
//! `cvl.graphText` answer the plan as `cvl plan` prints it and the graph as
//! DOT; the lenses name client-side commands (`cvl.showPlan`,
//! `cvl.showReferences`) that editors/ registers to show them, and a client
//! without them sends `cvl.showPlan` here, which answers the same text. Planned by the [`Previewer`](crate::preview::Previewer) on the
//! request's snapshot: an edit cancels what is still analysing.

use cvl_analysis::SourceFile;
use cvl_syntax::TextSize;
use serde_json::Value;
use tower_lsp::lsp_types::{CodeLens, CodeLensParams, Command, ExecuteCommandParams, Url};

use crate::preview::{PlanPreview, Previewer};
use crate::state::{Answer, Failure};
use crate::world::Snapshot;

/// The commands the server carries out (`workspace/executeCommand`). Not
/// `cvl.showPlan`: clients register that one to show what `cvl.planText`
/// answers (an advertised name would be taken by VS Code's client).
pub const COMMANDS: [&str; 2] = ["cvl.planText", "cvl.graphText"];

/// The objects of `file` that are deployed, as `cvl plan` would take them:
/// the file's only object, and any object the state records as a
/// deployment.
fn deployed(snap: &Snapshot, file: SourceFile, previewer: &dyn Previewer) -> Answer<Vec<String>> {
    let tree = snap.analysis.item_tree(file)?;
    let recorded = previewer.deployments();
    Ok(tree
        .objects
        .iter()
        .map(|o| o.data.name.text.to_string())
        .filter(|name| tree.objects.len() == 1 || recorded.contains(name))
        .collect())
}

/// Each deployed object of `file` and its plan (or why there is none).
fn plans(snap: &Snapshot, file: SourceFile) -> Answer<Vec<(String, Result<PlanPreview, String>)>> {
    let (Some(previewer), Some(path)) = (&snap.previewer, snap.path(file)) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for object in deployed(snap, file, previewer.as_ref())? {
        // The analysis is cancelled by the next edit: stop here then.
        snap.analysis.item_tree(file)?;
        match previewer.plan(&snap.analysis, file, path, &object) {
            Ok(Some(plan)) => out.push((object, Ok(plan))),
            Ok(None) => {} // no state: the preview is off
            Err(e) => out.push((object, Err(e))),
        }
    }
    snap.analysis.item_tree(file)?;
    Ok(out)
}

pub fn code_lens(snap: &Snapshot, params: CodeLensParams) -> Answer<Option<Vec<CodeLens>>> {
    let uri = params.text_document.uri;
    let Some((file, index)) = snap.document(&uri) else {
        return Ok(None);
    };
    let tree = snap.analysis.item_tree(file)?;
    let start_of = |name: &str| {
        tree.object(name)
            .map(|o| o.start + o.data.name.range.start())
            .unwrap_or_default()
    };
    let line = |at: TextSize| {
        let p = index.position(at);
        tower_lsp::lsp_types::Range::new(p, p)
    };
    let mut lenses = Vec::new();
    for (object, plan) in plans(snap, file)? {
        let title = match &plan {
            Ok(plan) => format!("plan: {}", plan.summary),
            Err(why) => format!("no plan: {why}"),
        };
        lenses.push(CodeLens {
            range: line(start_of(&object)),
            command: Some(Command {
                title,
                command: "cvl.showPlan".into(),
                arguments: Some(vec![Value::String(uri.to_string()), Value::String(object)]),
            }),
            data: None,
        });
    }
    // Where each appliance is used, and what runs it.
    let uses = snap.analysis.components_by_type(file, snap.local_files())?;
    for (def, components) in uses {
        let Some(o) = tree.object(&def.name) else {
            continue;
        };
        let running = snap
            .previewer
            .as_ref()
            .map(|p| p.running(&def.name))
            .unwrap_or_default();
        if components.is_empty() && running.is_empty() {
            continue;
        }
        let mut parts = Vec::new();
        if !components.is_empty() {
            let s = if components.len() == 1 { "" } else { "s" };
            parts.push(format!("{} component{s}", components.len()));
        }
        if !running.is_empty() {
            let shown: Vec<String> = running
                .iter()
                .take(3)
                .map(|r| {
                    let version = r.version.map(|v| format!(" v{v}")).unwrap_or_default();
                    format!(
                        "{}/{}{version} on {} ({})",
                        r.deployment, r.component, r.host, r.status
                    )
                })
                .collect();
            let more = running.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            parts.push(format!("deployed: {}{more}", shown.join(", ")));
        }
        let locations: Vec<Value> = components
            .iter()
            .filter_map(|c| snap.location(c.file, c.range))
            .filter_map(|l| serde_json::to_value(l).ok())
            .collect();
        let at = line(o.start + o.data.name.range.start());
        lenses.push(CodeLens {
            range: at,
            command: Some(Command {
                title: parts.join(" · "),
                command: "cvl.showReferences".into(),
                arguments: Some(vec![
                    Value::String(uri.to_string()),
                    serde_json::to_value(at.start).unwrap_or(Value::Null),
                    Value::Array(locations),
                ]),
            }),
            data: None,
        });
    }
    Ok(Some(lenses))
}

/// The plan's hints: at each component a deployed object declares, what
/// applying it would do to it (and to the components inside it).
pub fn hints(snap: &Snapshot, file: SourceFile) -> Answer<Vec<(TextSize, String)>> {
    let tree = snap.analysis.item_tree(file)?;
    let mut out = Vec::new();
    for (object, plan) in plans(snap, file)? {
        let (Ok(plan), Some(o)) = (plan, tree.object(&object)) else {
            continue;
        };
        // Components the object inherits (declared in an appliance it
        // extends): their hints at the object's name.
        let own: Vec<&str> = o.data.components.iter().map(|c| &*c.name.text).collect();
        let inherited: Vec<String> = plan
            .actions
            .iter()
            .filter(|a| !own.contains(&a.component.split('.').next().unwrap_or_default()))
            .map(|a| format!("{} {}: {}", a.component, a.action, a.reason))
            .collect();
        if !inherited.is_empty() {
            out.push((o.start + o.data.name.range.end(), inherited.join("; ")));
        }
        for comp in &o.data.components {
            let name: &str = &comp.name.text;
            let said: Vec<String> = plan
                .actions
                .iter()
                .filter(|a| a.component == name || a.component.starts_with(&format!("{name}.")))
                .map(|a| {
                    let who = if a.component == name {
                        String::new()
                    } else {
                        format!("{} ", a.component)
                    };
                    format!("{who}{}: {}", a.action, a.reason)
                })
                .collect();
            if !said.is_empty() {
                out.push((o.start + comp.name.range.end(), said.join("; ")));
            }
        }
    }
    Ok(out)
}

/// The plan's actions in order, for the hover of a deployed object's name.
pub fn hover_text(snap: &Snapshot, file: SourceFile, offset: TextSize) -> Answer<Option<String>> {
    let tree = snap.analysis.item_tree(file)?;
    let Some(o) = tree
        .objects
        .iter()
        .find(|o| (o.data.name.range + o.start).contains_inclusive(offset))
    else {
        return Ok(None);
    };
    let name = o.data.name.text.to_string();
    let Some((_, plan)) = plans(snap, file)?.into_iter().find(|(n, _)| *n == name) else {
        return Ok(None);
    };
    Ok(Some(match plan {
        Err(why) => format!("**Plan**: none ({why})"),
        Ok(plan) if plan.actions.is_empty() => {
            "**Plan** against the utility's state: no changes".to_string()
        }
        Ok(plan) => {
            let mut text = format!("**Plan** against the utility's state: {}\n", plan.summary);
            for (i, a) in plan.actions.iter().enumerate() {
                text.push_str(&format!(
                    "\n{}. `{}` {}: {}",
                    i + 1,
                    a.action,
                    a.component,
                    a.reason
                ));
            }
            text
        }
    }))
}

/// `cvl.planText URI OBJECT`: the plan as `cvl plan` prints it;
/// `cvl.graphText URI OBJECT`: the dependency graph as DOT. (The same for
/// `cvl.showPlan` and `cvl.showGraph`, from clients that send the lens's
/// command here.)
pub fn execute_command(snap: &Snapshot, params: ExecuteCommandParams) -> Answer<Option<Value>> {
    let invalid = |why: &str| Failure::Invalid(why.to_string());
    let [uri, object] = params.arguments.as_slice() else {
        return Err(invalid(
            "expected two arguments: the document's URI and the object",
        ));
    };
    let (Some(uri), Some(object)) = (uri.as_str(), object.as_str()) else {
        return Err(invalid(
            "expected two strings: the document's URI and the object",
        ));
    };
    let uri = Url::parse(uri).map_err(|e| invalid(&format!("not a URI: {e}")))?;
    let file = snap
        .file_of(&uri)
        .ok_or_else(|| invalid("not a document of this workspace"))?;
    let path = snap
        .path(file)
        .ok_or_else(|| invalid("the document has no path"))?;
    let Some(previewer) = &snap.previewer else {
        return Err(invalid("the plan preview is off"));
    };
    let text = match params.command.as_str() {
        "cvl.planText" | "cvl.showPlan" => match previewer.plan(&snap.analysis, file, path, object)
        {
            Ok(Some(plan)) => plan.text,
            Ok(None) => "No state yet: nothing has been applied (`cvl apply`).".to_string(),
            Err(why) => format!("No plan: {why}"),
        },
        "cvl.graphText" | "cvl.showGraph" => previewer
            .graph(&snap.analysis, file, path, object)
            .unwrap_or_else(|why| format!("// no graph: {why}\n")),
        other => return Err(invalid(&format!("unknown command {other}"))),
    };
    snap.analysis.item_tree(file)?;
    Ok(Some(Value::String(text)))
}
