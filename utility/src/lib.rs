//! The utility service's side of the toolchain: what `cvl utility run`
//! decides, kept apart from the loop that acts so that each decision is a
//! plain function with tests of its own, as the planner's are.
//!
//! - [`decide`]: which actions of a plan the service carries out by itself
//!   (updates and resends) and which wait for a person; whether the policy
//!   lets it act now; blacklist violations; back-off for failing
//!   repositories.
//! - [`metrics`]: the service's counters and gauges, rendered as
//!   Prometheus text.
//! - [`web`]: the status page (`cvl utility run --http`): views of a
//!   snapshot the service publishes, a deployment's picture, templates,
//!   and the read-only HTTP server.
//!
//! The loop itself (polling repositories, planning, acting through the
//! executor under the state's apply lock, the health gate and rollback) is
//! `cvl/src/service.rs`: it needs the command's planning and executing,
//! which live above this crate.

pub mod decide;
pub mod metrics;
pub mod web;
