//! The API crate's tests, one binary.
//!
//! - `app`: `spawn_app()`, the whole API in this process on port 0 (temporary SQLite).
//! - `policy`: resolver policies, one small named test each, over real HTTP.
//! - `commands`: the command path (decide, sign, append) against a real store, alone and
//!   with two executors racing on the same streams.
//! - `schema`: `docs/schema.graphql` matches the schema the code serves.

mod app;
mod commands;
mod policy;
mod schema;
