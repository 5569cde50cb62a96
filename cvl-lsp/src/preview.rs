//! The plan preview's contract with the `cvl` command. This crate knows
//! neither the planner nor the state: the binary hands the server a
//! [`Previewer`] that plans a deployment from the server's own analysis (the
//! editor's unsaved text included) against a read-only view of the
//! utility's state, and says what the state runs. Without one (or without a
//! state) the preview is off and nothing else changes.

use std::path::Path;

use cvl_analysis::{Analysis, SourceFile};

/// Plans and looks into the state for the editor. Every method only reads:
/// no lock, no write, no prompt.
pub trait Previewer: Send + Sync {
    /// The plan of deploying `object` of `file` (at `path`) against the
    /// state. `Ok(None)`: there is no state to compare with (the preview is
    /// off); `Err`: why there is no plan (the file's errors, an unreadable
    /// state), in one line.
    fn plan(
        &self,
        analysis: &Analysis,
        file: SourceFile,
        path: &Path,
        object: &str,
    ) -> Result<Option<PlanPreview>, String>;

    /// The deployment's dependency graph, as Graphviz DOT.
    fn graph(
        &self,
        analysis: &Analysis,
        file: SourceFile,
        path: &Path,
        object: &str,
    ) -> Result<String, String>;

    /// What the state records running an appliance named `name`.
    fn running(&self, name: &str) -> Vec<Running>;

    /// The deployments the state records, by name.
    fn deployments(&self) -> Vec<String>;

    /// Something that changes whenever the state does (its file's size and
    /// time), to know when to refresh; `None` when there is no state.
    fn state_version(&self) -> Option<String>;
}

/// What applying a deployment would do, for the editor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanPreview {
    /// `2 to start · 1 to update`, or `no changes`.
    pub summary: String,
    /// In the order they would run.
    pub actions: Vec<PreviewAction>,
    /// The plan as `cvl plan` prints it.
    pub text: String,
}

/// One action of a previewed plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewAction {
    /// Its component's path (`d`, `s.x`).
    pub component: String,
    /// `start`, `update`, `resend`, `stop`, `remove`.
    pub action: String,
    /// Short, for a hint: `DNS 3 → 4`, `domain changed`.
    pub reason: String,
}

/// A component the state records running an appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub deployment: String,
    pub component: String,
    pub host: String,
    pub version: Option<u32>,
    /// `running`, `stopped`, ...
    pub status: String,
}
