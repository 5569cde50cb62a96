//! The publisher's side of an appliance, above the executor and beside
//! `cvl apply`: its program built from a recipe (`builder`, the recipe
//! format of appliances/README.md) and what one build holds compared with
//! another (`manifest`). `cvl build` is the command over it.

pub mod builder;
pub mod manifest;

pub use builder::{Build, Builder, Rebuild};
pub use manifest::{Difference, Manifest};
