//! The executor: carries plans out on QEMU hosts.
//!
//! - `protocol.rs`: the host operations as typed requests and responses.
//! - `agent.rs`: the host side (`cvl host serve`): disks, QEMU, QMP, the
//!   guest agent, taps and bridges, the attic.
//! - `transport/`: how the executor reaches an agent: a child process on
//!   this machine, or over SSH; one multiplexed conversation per host.
//! - `staging.rs`: program files sent to hosts that cannot fetch them.
//! - `apply.rs`: the walk over a plan's graph, one state transaction per
//!   step, progress as events.
//! - `qmp.rs`: QMP and guest-agent clients.
//!
//! The executor never reads CVL: the caller hands it a plan and, per
//! component, where its program comes from and its parameters on the wire.

pub mod agent;
pub mod apply;
pub mod protocol;
pub mod qmp;
pub mod staging;
pub mod transport;
