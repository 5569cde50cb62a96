//! The status page (`cvl utility run --http ADDR`): what the utility knows,
//! for a person to look at and for scripts to read. Read-only: nothing
//! here writes the state or reaches a host; the service publishes
//! [`Snapshot`]s (the state, its history, what it and the hosts said) and
//! reads consoles for it.
//!
//! - [`view`]: the pages as data (also the `/api/` JSON), pure functions of
//!   a snapshot.
//! - [`picture`]: a deployment's SVG layout: hosts as columns, VANs as
//!   bands, VXLAN links, provides/requires arrows, public addresses.
//! - [`pages`]: askama templates (`templates/`) turning views into HTML.
//! - [`server`]: axum routes, the token, GET only, server-sent events;
//!   the runtime the status page and `/metrics` share ([`Web`]).

pub mod pages;
pub mod picture;
pub mod server;
pub mod view;

pub use server::{Config, ConsoleReader, Counters, Feed, Web};
pub use view::{BackupSeen, HostSeen, Live, Pending, Snapshot, Survey};
