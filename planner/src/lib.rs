//! The CVL utility's planner: (desired state, utility state, options) ->
//! plan. Pure: no I/O, no clock, no randomness, so every test of a plan
//! needs no host and every plan is reproducible.
//!
//! Data flow, one module each:
//!
//! ```text
//! lower::topology ─▶ alloc::allocate ─▶ lower::desired ─▶ diff::plan ─▶ Plan
//!  (analysis → VMs,    (keep what exists,  (evaluate with     (actions, reasons,
//!   VANs, interfaces)   lowest free next)   allocations)       dependency order)
//! ```
//!
//! The state store (`cvl-state`) loads a [`model::UtilityState`] and records
//! [`model::Change`]s; the executor carries a [`plan::Plan`] out and records
//! what each action did ([`record::applied`]); [`show`] renders a plan for
//! people.

pub mod alloc;
pub mod diff;
pub mod fingerprint;
pub mod lower;
pub mod model;
pub mod plan;
pub mod record;
pub mod show;

pub use alloc::{allocate, allocate_pinned, AllocError, Allocation};
pub use diff::{plan, plan_stop, Options, Pin, PlanError};
pub use model::*;
pub use plan::{Action, ActionKind, MoveHow, Plan, Reason};
