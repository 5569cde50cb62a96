//! The language server's plan preview (`cvl_lsp::Previewer`): a deployment
//! planned from the server's own analysis, unsaved edits included, against
//! a read-only view of the utility's state, exactly as `cvl plan` plans it
//! (`crate::plan::plan_analysis`). Nothing here takes the apply lock, writes, or
//! asks for a sensitive value: those the environment or an unlocked agent
//! supply are compared by fingerprint, the others count as unchanged.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cvl_analysis::{Analysis, CheckOptions, Severity, SourceFile};
use cvl_lsp::{PlanPreview, PreviewAction, Previewer, Running};
use cvl_planner::model::UtilityState;
use cvl_planner::plan::{Action, ActionKind, Plan, Reason, Shown};

/// The state as read: itself, its fingerprint key, and what runs each
/// appliance (by the appliance's name), indexed once per read.
struct Loaded {
    state: UtilityState,
    key: Vec<u8>,
    running: HashMap<String, Vec<Running>>,
}

type Known = Arc<Loaded>;

/// The state as last read, by its version: read again only when it changed.
type Cached = Option<(String, Known)>;

#[derive(Default)]
pub struct StatePreviewer {
    state: Mutex<Cached>,
}

impl StatePreviewer {
    /// The state and its fingerprint key, `None` when there is no state.
    fn state(&self) -> Result<Option<Known>, String> {
        let Some(version) = crate::state::version() else {
            return Ok(None);
        };
        let mut cached = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, state)) = cached.as_ref() {
            if *seen == version {
                return Ok(Some(state.clone()));
            }
        }
        let Some(mut store) = crate::state::open_read_only().map_err(|e| format!("{e:#}"))? else {
            return Ok(None);
        };
        let state = store.load().map_err(|e| e.to_string())?;
        let key = store.fingerprint_key().map_err(|e| e.to_string())?;
        let mut running: HashMap<String, Vec<Running>> = HashMap::new();
        for (deployment, d) in &state.deployments {
            for (path, vm) in &d.vms {
                running
                    .entry(vm.spec.appliance.name.clone())
                    .or_default()
                    .push(Running {
                        deployment: deployment.clone(),
                        component: path.0.clone(),
                        host: vm.alloc.host.clone(),
                        version: vm.spec.appliance.version,
                        status: vm.status.as_str().to_string(),
                    });
            }
        }
        let state = Arc::new(Loaded {
            state,
            key,
            running,
        });
        *cached = Some((version, state.clone()));
        Ok(Some(state))
    }

    fn planned(
        &self,
        analysis: &Analysis,
        file: SourceFile,
        path: &Path,
        object: &str,
    ) -> Result<Option<Plan>, String> {
        let Some(state) = self.state()? else {
            return Ok(None);
        };
        let options = CheckOptions {
            deploy: vec![object.to_string()],
        };
        let errors = analysis
            .diagnostics(file, &options)
            .map_err(|_| "the file changed".to_string())?
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        if errors > 0 {
            let s = if errors == 1 { "" } else { "s" };
            return Err(format!("{errors} error{s} in the file"));
        }
        let settings = cvl_repo::Settings::from_env()
            .and_then(|s| s.with_workspace(path.parent().unwrap_or(Path::new("."))))
            .map_err(|e| e.to_string())?;
        let (plan, _sensitive) = crate::plan::plan_analysis(
            analysis,
            file,
            path,
            object,
            &settings,
            &state.state,
            &state.key,
            &mut crate::secrets::Nobody,
            &cvl_planner::Options::default(),
        )
        .map_err(|e| {
            format!("{e:#}")
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })?;
        Ok(Some(plan))
    }
}

impl Previewer for StatePreviewer {
    fn plan(
        &self,
        analysis: &Analysis,
        file: SourceFile,
        path: &Path,
        object: &str,
    ) -> Result<Option<PlanPreview>, String> {
        let Some(plan) = self.planned(analysis, file, path, object)? else {
            return Ok(None);
        };
        let mut text = Vec::new();
        let _ = cvl_planner::show::human(&mut text, &plan);
        Ok(Some(PlanPreview {
            summary: summary(&plan),
            actions: plan
                .actions
                .iter()
                .map(|a| PreviewAction {
                    component: a.component.0.clone(),
                    action: a.action.as_str().to_string(),
                    reason: short_reason(a),
                })
                .collect(),
            text: String::from_utf8_lossy(&text).into_owned(),
        }))
    }

    fn graph(
        &self,
        analysis: &Analysis,
        file: SourceFile,
        path: &Path,
        object: &str,
    ) -> Result<String, String> {
        match self.planned(analysis, file, path, object)? {
            Some(plan) => Ok(cvl_planner::show::dot(&plan)),
            None => Err("no state yet: nothing has been applied".into()),
        }
    }

    fn running(&self, name: &str) -> Vec<Running> {
        match self.state() {
            Ok(Some(state)) => state.running.get(name).cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn deployments(&self) -> Vec<String> {
        match self.state() {
            Ok(Some(state)) => state.state.deployments.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    fn state_version(&self) -> Option<String> {
        crate::state::version()
    }
}

/// `2 to start · 1 to update`, or `no changes`.
fn summary(plan: &Plan) -> String {
    if !plan.has_changes() {
        return "no changes".to_string();
    }
    plan.counts()
        .iter()
        .map(|(kind, n)| match kind {
            ActionKind::Resend => format!("{n} resend"),
            kind => format!("{n} to {}", kind.as_str()),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A reason short enough for a hint: `DNS 3 → 4`, `domain changed`, `a
/// sensitive value changed`.
fn short_reason(action: &Action) -> String {
    let changed = |changes: &[cvl_planner::plan::ParamChange]| {
        let plain: Vec<&str> = changes
            .iter()
            .filter(|c| !matches!(c.after, Shown::Sensitive(_)))
            .map(|c| c.param.as_str())
            .collect();
        match (plain.is_empty(), changes.len() > plain.len()) {
            (true, _) => "a sensitive value changed".to_string(),
            (false, false) => format!("{} changed", plain.join(", ")),
            (false, true) => format!("{} and a sensitive value changed", plain.join(", ")),
        }
    };
    match &action.why {
        Reason::VersionChanged {
            appliance,
            from,
            to,
            ..
        } => {
            let v = |n: &Option<u32>| n.map_or("unversioned".to_string(), |n| n.to_string());
            format!("{appliance} {} → {}", v(from), v(to))
        }
        Reason::ParamsChanged { changes } => changed(changes),
        Reason::ResendNeedsRestart { changes, .. } => {
            format!("{} (restarts: no guest agent)", changed(changes))
        }
        _ => action.reason.clone(),
    }
}
