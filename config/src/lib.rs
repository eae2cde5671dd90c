//! What every crate's config section shares. Each crate owns and parses
//! its own section (the binary only assembles them); the pieces they have
//! in common live here so that they read, check and fail the same way.

pub mod duration;
mod secret;
pub mod upstream_url;

pub use secret::Secret;
