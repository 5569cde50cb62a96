//! Plans for people: the summary and details `cvl plan`, `cvl apply` and
//! the editor's preview show, and the deployment as a Graphviz graph
//! (`cvl graph`). Pure, as the rest of the planner.

use std::collections::BTreeMap;
use std::io::Write;

use crate::model::{ComponentPath, ParamValue};
use crate::plan::{ActionKind, Plan};

/// A plan's deployment as a Graphviz graph: a box per component, an arrow
/// from each provider to what requires it.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::from("digraph deployment {\n  rankdir=LR;\n  node [shape=box];\n");
    let mut providers: BTreeMap<&str, Vec<&ComponentPath>> = BTreeMap::new();
    for (path, vm) in &plan.desired {
        for s in &vm.provides {
            providers.entry(s).or_default().push(path);
        }
    }
    for (path, vm) in &plan.desired {
        out.push_str(&format!(
            "  {:?} [label={:?}];\n",
            path.0,
            format!("{}\\n{}", path.0, vm.appliance.name)
        ));
    }
    for (path, vm) in &plan.desired {
        for s in &vm.requires {
            for p in providers.get(s.as_str()).into_iter().flatten() {
                if *p != path {
                    out.push_str(&format!("  {:?} -> {:?} [label={:?}];\n", p.0, path.0, s));
                }
            }
        }
    }
    out.push_str("}\n");
    out
}

/// The plan for people: a summary line per action in the order they can
/// run, then each component's details.
pub fn human(w: &mut dyn Write, plan: &Plan) -> std::io::Result<()> {
    if !plan.has_changes() {
        writeln!(
            w,
            "No changes: {} is as its CVL says ({} VM appliances).",
            plan.deployment,
            plan.desired.len()
        )?;
    } else {
        let counts: Vec<String> = plan
            .counts()
            .iter()
            .map(|(k, n)| format!("{n} to {}", k.as_str()))
            .collect();
        writeln!(w, "Plan for {}: {}.\n", plan.deployment, counts.join(", "))?;
        let width = plan
            .actions
            .iter()
            .map(|a| a.component.0.len())
            .max()
            .unwrap_or(0);
        for a in &plan.actions {
            let after = if a.after.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = a.after.iter().map(|p| p.0.as_str()).collect();
                format!("  (after {})", names.join(", "))
            };
            let how = a.how.as_ref().map_or(String::new(), |h| format!(" ({h})"));
            writeln!(
                w,
                "  {:<6} {:<width$}  {}{how}{after}",
                a.action.as_str(),
                a.component.0,
                a.reason
            )?;
        }
    }
    let changed: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| !matches!(a.action, ActionKind::Stop))
        .collect();
    if !changed.is_empty() {
        writeln!(w, "\nDetails:")?;
    }
    for a in changed {
        let path = &a.component;
        let Some(vm) = plan.desired.get(path) else {
            writeln!(
                w,
                "  {}: its folder moves to the attic; its data disks are kept there",
                path.0
            )?;
            continue;
        };
        let app = &vm.appliance;
        let version = app
            .version
            .map_or(String::new(), |v| format!(" version {v}"));
        let host = plan.allocations.get(path).map_or("-", |a| a.host.as_str());
        writeln!(
            w,
            "  {} ({}{version} from {}) on {host}, {} MiB",
            path.0, app.name, app.source, vm.memory_mib
        )?;
        if let Some(alloc) = plan.allocations.get(path) {
            for (name, iface) in &alloc.interfaces {
                let place = match iface.network {
                    Some(n) => match plan.vans.iter().find(|(_, m)| **m == n).map(|(v, _)| v) {
                        Some(v) if v.is_root() => format!("the deployment's VAN (network {n})"),
                        Some(v) => format!("VAN {} (network {n})", v.0),
                        None => format!("network {n}"),
                    },
                    None if iface.ip.is_some() => "public".to_string(),
                    None => "not attached".to_string(),
                };
                writeln!(
                    w,
                    "      {name:<10} {}  {:<15} {place}",
                    iface.mac,
                    iface.ip.as_deref().unwrap_or("-")
                )?;
            }
        }
        for d in &vm.data_disks {
            writeln!(
                w,
                "      data disk {} ({}), kept across updates",
                d.device, d.size
            )?;
        }
        for c in &a.changes {
            writeln!(w, "      {c}")?;
        }
        if a.action == ActionKind::Start && a.changes.is_empty() {
            let sensitive = vm
                .params
                .values()
                .filter(|v| matches!(v, ParamValue::Sensitive { .. }))
                .count();
            writeln!(
                w,
                "      {} parameters ({} sensitive, as fingerprints only)",
                vm.params.len(),
                sensitive
            )?;
        }
    }
    if !plan.missing_secrets.is_empty() {
        writeln!(w, "\nSensitive values not supplied (applying needs them):")?;
        for m in &plan.missing_secrets {
            let names: Vec<&str> = m.components.iter().map(|p| p.0.as_str()).collect();
            // The vault's key as `cvl_secrets::key` names it.
            writeln!(
                w,
                "  {} (for {}): `cvl secrets set {}/{}` (with `cvl agent` running), or set {} \
                 (or {}_FD to a file descriptor to read it from)",
                m.param,
                names.join(", "),
                plan.deployment,
                m.param,
                m.supply,
                m.supply
            )?;
        }
    }
    Ok(())
}
