//! A plan: the actions that take a deployment from its state to its desired
//! state, each with the reason a person reads and the actions it waits for,
//! plus the basis it was computed from, so that a stale plan is refused.
//! This is also the saved plan's file format (JSON, `format_version` 1; see
//! docs/plans.md).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{ComponentPath, DesiredVm, ParamValue, Site, Status, VmAlloc};

pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Create what is missing (overlays, data disks) and boot.
    Start,
    /// Stop, swap the program disk overlays onto the new version (data
    /// disks kept), start.
    Update,
    /// Write the new parameters into the running guest; no restart.
    Resend,
    Stop,
    /// Stop, then move the component's folder to the attic (never delete).
    Remove,
    /// Stop on its old host, carry its data disks over, start on the new
    /// host; the old folder goes to that host's attic.
    Move,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Start => "start",
            ActionKind::Update => "update",
            ActionKind::Resend => "resend",
            ActionKind::Stop => "stop",
            ActionKind::Remove => "remove",
            ActionKind::Move => "move",
        }
    }

    /// Stops and removes run dependents first; the rest run providers first.
    pub fn is_stopping(self) -> bool {
        matches!(self, ActionKind::Stop | ActionKind::Remove)
    }
}

/// A parameter as a plan shows it: its values, or for a sensitive one only
/// whether it is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", untagged)]
pub enum Shown {
    Values(Vec<String>),
    Sensitive(SensitiveMark),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensitiveMark {
    Sensitive,
}

impl Shown {
    pub fn of(value: Option<&ParamValue>) -> Shown {
        match value {
            Some(ParamValue::Plain { values }) => Shown::Values(values.clone()),
            Some(ParamValue::Sensitive { .. }) => Shown::Sensitive(SensitiveMark::Sensitive),
            None => Shown::Values(Vec::new()),
        }
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::Values(v) if v.is_empty() => f.write_str("(unset)"),
            Shown::Values(v) => {
                let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
                f.write_str(&quoted.join(", "))
            }
            Shown::Sensitive(_) => f.write_str("(sensitive)"),
        }
    }
}

/// One parameter that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamChange {
    pub param: String,
    pub before: Shown,
    pub after: Shown,
    /// For a sensitive parameter, the keyed fingerprints before and after:
    /// they show that the value changed and reveal nothing of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<(String, String)>,
}

impl ParamChange {
    /// The change of parameter `param` from `before` to `after`.
    pub fn new(
        param: &str,
        before: Option<&ParamValue>,
        after: Option<&ParamValue>,
    ) -> ParamChange {
        let fingerprint = |v: Option<&ParamValue>| match v {
            Some(ParamValue::Sensitive {
                fingerprint: Some(f),
                ..
            }) => Some(f.clone()),
            _ => None,
        };
        ParamChange {
            param: param.to_string(),
            before: Shown::of(before),
            after: Shown::of(after),
            fingerprints: fingerprint(before).zip(fingerprint(after)),
        }
    }
}

impl fmt::Display for ParamChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((a, b)) = &self.fingerprints {
            // Eight hex digits of each HMAC tell two values apart.
            let short =
                |s: &str| -> String { s.rsplit(':').next().unwrap_or(s).chars().take(8).collect() };
            return write!(
                f,
                "{} (sensitive) fingerprint {} -> {}",
                self.param,
                short(a),
                short(b)
            );
        }
        if matches!(self.after, Shown::Sensitive(_)) && matches!(self.before, Shown::Sensitive(_)) {
            return write!(f, "{} (sensitive value changed)", self.param);
        }
        write!(f, "{} {} -> {}", self.param, self.before, self.after)
    }
}

/// Why an action is planned: data, so tools can match on it; `Display`
/// writes the sentence people read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    /// Not in the state: a new component.
    New,
    /// In the state, but not running.
    NotRunning { status: Status },
    /// Recorded running, but its host says its QEMU is gone (it crashed,
    /// was killed, or its host restarted): started again, data disks kept.
    Crashed,
    /// A new version of its appliance.
    VersionChanged {
        appliance: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site: Option<Site>,
    },
    /// The same version (or an unpublished appliance) whose program disks
    /// or VM description changed.
    ProgramChanged { appliance: String },
    /// Another appliance altogether.
    ApplianceReplaced { from: String, to: String },
    /// Only parameters changed.
    ParamsChanged { changes: Vec<ParamChange> },
    /// Only parameters changed, but the guest runs no guest agent to take
    /// them while it runs: it restarts with them.
    ResendNeedsRestart {
        component: ComponentPath,
        changes: Vec<ParamChange>,
    },
    /// No longer in the deployment.
    Removed,
    /// Its host is drained.
    Moved { from: String, to: String },
    /// A person asked for it (`cvl move PATH --to HOST`).
    MoveAsked { from: String, to: String },
    /// Its host is fenced (known not to run it): started on `to` with its
    /// data disks from their newest backups.
    Recovered { from: String, to: String },
    /// `cvl stop` asked for it.
    StopRequested {
        /// The component that was asked to stop, when this one stops because
        /// it depends on it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        because_of: Option<ComponentPath>,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::New => f.write_str("new"),
            Reason::Moved { from, to } => write!(f, "host {from} is drained: to {to}"),
            Reason::MoveAsked { from, to } => write!(f, "asked (`cvl move`): from {from} to {to}"),
            Reason::Recovered { from, to } => write!(
                f,
                "host {from} is fenced: recovered on {to} from its newest backup"
            ),
            Reason::NotRunning { status } => write!(f, "recorded as {}", status.as_str()),
            Reason::Crashed => f.write_str(
                "recorded running, but its QEMU is gone (it crashed, or its host restarted)",
            ),
            Reason::VersionChanged {
                appliance,
                from,
                to,
                site,
            } => {
                let v = |n: &Option<u32>| n.map_or("unversioned".to_string(), |n| n.to_string());
                write!(f, "{appliance} {} -> {}", v(from), v(to))?;
                if let Some(site) = site {
                    write!(f, " (import at {site})")?;
                }
                Ok(())
            }
            Reason::ProgramChanged { appliance } => {
                write!(f, "{appliance}'s program disks or VM description changed")
            }
            Reason::ApplianceReplaced { from, to } => write!(f, "{from} replaced by {to}"),
            Reason::ParamsChanged { changes } => {
                let parts: Vec<String> = changes.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join("; "))
            }
            Reason::ResendNeedsRestart { component, changes } => {
                let parts: Vec<String> = changes.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "resend needs a restart: {component} has no guest agent ({})",
                    parts.join("; ")
                )
            }
            Reason::Removed => f.write_str("no longer in the deployment"),
            Reason::StopRequested { because_of: None } => f.write_str("stop requested"),
            Reason::StopRequested {
                because_of: Some(p),
            } => write!(f, "it requires {p}, which stops"),
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub action: ActionKind,
    pub component: ComponentPath,
    /// The sentence, as `why` says it.
    pub reason: String,
    pub why: Reason,
    /// Parameters that change along with this action (for a resend, the
    /// same as `why`'s; for an update or a restart, shown in the details).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ParamChange>,
    /// Components whose actions in this plan must finish first.
    pub after: Vec<ComponentPath>,
    /// For a move: the host it leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_host: Option<String>,
    /// For a move off a host that answers: live or offline, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<MoveHow>,
}

/// How a move is carried out: live (the VM keeps running while its memory
/// and its disks' own blocks migrate; it stops only for the last instant)
/// or offline (stopped, its data disks copied, started on the new host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveHow {
    pub live: bool,
    /// Why so, as a clause: `the host is drained live`.
    pub because: String,
}

impl fmt::Display for MoveHow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.live { "live" } else { "offline" };
        write!(f, "{how}: {}", self.because)
    }
}

/// What a plan was computed from; applying it against anything else is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    pub lineage: String,
    pub serial: u64,
    pub inputs_digest: String,
}

/// A sensitive value the plan needs and nobody supplied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingSecret {
    /// The parameter where the value enters (`rootpw`).
    pub param: String,
    /// How to supply it (`CVL_SECRET_ACMESUITE_ROOTPW`).
    pub supply: String,
    /// The components that receive it.
    pub components: Vec<ComponentPath>,
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub deployment: String,
    pub basis: Basis,
    pub actions: Vec<Action>,
    /// The allocation of every component of the desired state, and the
    /// recorded one of every component being removed.
    pub allocations: BTreeMap<ComponentPath, VmAlloc>,
    pub vans: BTreeMap<ComponentPath, u32>,
    /// What each component runs with, as the executor needs it
    /// (sensitive parameters as fingerprints only).
    pub desired: BTreeMap<ComponentPath, DesiredVm>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_secrets: Vec<MissingSecret>,
    /// What the plan was made from, so that applying a saved plan can
    /// check it is still current (and fetch the sensitive values, which a
    /// plan never holds). Set by the caller; `None` for a stop plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PlanSource>,
}

/// The command line a plan came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSource {
    /// The CVL file, absolute.
    pub file: String,
    pub deploy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Counts by kind, in the order start, update, resend, stop, remove.
    pub fn counts(&self) -> Vec<(ActionKind, usize)> {
        let mut counts: BTreeMap<ActionKind, usize> = BTreeMap::new();
        for a in &self.actions {
            *counts.entry(a.action).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// Refuses a plan computed from another state or other inputs, naming
    /// what changed since.
    pub fn check_fresh(&self, current: &Basis) -> Result<(), Stale> {
        let mut what = Vec::new();
        if self.format_version != FORMAT_VERSION {
            what.push(format!(
                "the plan has format {} and this cvl reads format {FORMAT_VERSION}",
                self.format_version
            ));
        }
        if self.basis.lineage != current.lineage {
            what.push("it was made against another utility's state".to_string());
        } else if self.basis.serial != current.serial {
            what.push(format!(
                "the state changed since (serial {} then, {} now)",
                self.basis.serial, current.serial
            ));
        }
        if self.basis.inputs_digest != current.inputs_digest {
            what.push("the CVL files, their imports or the secrets changed since".to_string());
        }
        if what.is_empty() {
            Ok(())
        } else {
            Err(Stale { what })
        }
    }
}

/// Why a saved plan cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub what: Vec<String>,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the saved plan is stale: {}; run `cvl plan` again",
            self.what.join("; ")
        )
    }
}

impl std::error::Error for Stale {}
