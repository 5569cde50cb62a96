//! The publisher's side of an appliance, above the executor and beside
//! `cvl apply`: its program built from a recipe (`builder`, the recipe
//! format of appliances/README.md), what one build holds compared with
//! another (`manifest`), and its test (`contract`: the guest contract and
//! the appliance's own checks, in a `sandbox` of its own, with the
//! `params` a test gives, reported by `report`). `cvl build` and `cvl test`
//! are the commands over it.

pub mod builder;
pub mod contract;
pub mod manifest;
pub mod params;
pub mod report;
pub mod sandbox;

pub use builder::{Build, Builder, Rebuild};
pub use manifest::{Difference, Manifest};
