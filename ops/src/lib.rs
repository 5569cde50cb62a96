//! What the toolchain does to deployments, for every caller the same way:
//! the `cvl` command (a person at a terminal, or CI), the utility service
//! (`cvl-service`), and the language server's plan preview.
//!
//! - [`state`]: where the utility's state is, opened read-write or only
//!   to look.
//! - [`hosts`]: the hosts to place on (this machine when none is
//!   registered) and the connector that reaches their agents.
//! - [`registry`]: registering, draining, re-keying and removing hosts.
//! - [`fence`]: a silent host fenced (its fence command, or a person's
//!   word) before its VMs start elsewhere; its rejoining.
//! - [`secrets`]: sensitive values from the environment, the user agent,
//!   or (through the caller's [`secrets::Ask`]) a person.
//! - [`plan`]: a deployment's CVL loaded, checked and planned against the
//!   state.
//! - [`run`]: a plan carried out through the executor, each step a state
//!   transaction and each finished action an entry of the history.
//! - [`survey`]: what every host says runs, beside what the state records.
//! - [`preview`]: the language server's plan preview (`cvl_lsp::Previewer`),
//!   planned as `cvl plan` plans, read-only.
//! - [`backup`]: data disks backed up into a store, and put back.
//! - [`policy`]: what `cvl policy set` changes in a deployment's policy.
//! - [`report`]: diagnostics as JSON for scripts and SARIF for CI.
//! - [`exec`]: a command run in a running appliance through its guest
//!   agent, its output streamed.
//!
//! Nothing here prints or asks: callers draw progress from [`run`]'s events
//! and diagnostics for people from [`plan::Planned`] (machines get
//! [`report`]'s values).

pub mod backup;
pub mod exec;
pub mod fence;
pub mod hosts;
pub mod plan;
pub mod policy;
pub mod preview;
pub mod registry;
pub mod report;
pub mod run;
pub mod secrets;
pub mod state;
pub mod survey;
