//! What the service says: one JSON line per event on stderr (for
//! journald and log shippers), each problem said once while it stays the
//! same, and entries in the state's history for what people should find
//! later (`cvl history`).

use std::collections::HashMap;

use anyhow::Result;
use cvl_planner::model::HistoryEntry;
use cvl_planner::Change;

/// One JSON line on stderr: `{"time": ..., "event": ..., FIELDS}`.
pub fn log(event: &str, fields: serde_json::Value) {
    let mut line = serde_json::json!({ "time": cvl_ops::state::now(), "event": event });
    if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    eprintln!("{line}");
}

/// The executor's progress as log lines.
pub fn log_event(deployment: &str, event: &cvl_executor::apply::Event) {
    use cvl_executor::apply::{Event, Outcome};
    match event {
        Event::Began { component, action } => log(
            "action_began",
            serde_json::json!({
                "deployment": deployment, "component": component.0, "action": action.as_str(),
            }),
        ),
        Event::Finished {
            component,
            action,
            outcome,
            elapsed,
            ..
        } => {
            let (outcome, detail) = match outcome {
                Outcome::Done(d) => ("done", d.clone()),
                Outcome::Failed(f) => ("failed", f.message.clone()),
                Outcome::Skipped(c) => ("skipped", format!("{} failed first", c.0)),
            };
            log(
                "action_finished",
                serde_json::json!({
                    "deployment": deployment, "component": component.0,
                    "action": action.as_str(), "outcome": outcome, "detail": detail,
                    "seconds": elapsed.as_secs_f64(),
                }),
            );
        }
    }
}

/// Problems said once while they stay the same.
#[derive(Default)]
pub struct Reporter {
    said: HashMap<(String, &'static str), String>,
}

impl Reporter {
    /// Logs `what` about a deployment under `kind`, unless it said the same
    /// last time; whether it was said.
    pub fn report(&mut self, deployment: &str, kind: &'static str, what: String) -> bool {
        let key = (deployment.to_string(), kind);
        if self.said.get(&key) == Some(&what) {
            return false;
        }
        log(
            kind,
            serde_json::json!({ "deployment": deployment, "message": what }),
        );
        self.said.insert(key, what);
        true
    }

    /// Forgets what was said under `kind`: it is said again next time.
    pub fn clear(&mut self, deployment: &str, kind: &'static str) {
        self.said.remove(&(deployment.to_string(), kind));
    }
}

/// An entry of the state's history by the service.
pub struct Entry<'a> {
    pub deployment: &'a str,
    pub component: &'a str,
    pub action: &'a str,
    pub from_version: Option<u32>,
    pub to_version: Option<u32>,
    pub outcome: &'a str,
    pub detail: &'a str,
}

/// Writes `entry` into the state's history, as the service.
pub fn history(entry: Entry) -> Result<()> {
    cvl_ops::state::open()?.commit(&[Change::Logged(HistoryEntry {
        at: cvl_ops::state::now(),
        deployment: entry.deployment.to_string(),
        component: entry.component.to_string(),
        actor: "service".to_string(),
        action: entry.action.to_string(),
        from_version: entry.from_version,
        to_version: entry.to_version,
        outcome: entry.outcome.to_string(),
        detail: entry.detail.to_string(),
        moved: None,
    })])?;
    Ok(())
}
