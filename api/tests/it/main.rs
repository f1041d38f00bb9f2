//! The API crate's tests, one binary.
//!
//! - `commands`: the command path (decide, sign, append) against a real store, alone and
//!   with two executors racing on the same streams.
//! - `schema`: `docs/schema.graphql` matches the schema the code serves.

mod commands;
mod schema;
