//! The `openguild` binary's tests: the real binary, run as a user would.
//!
//! - `cli`: `events verify|show|tail`, `projections status|rebuild`, `audit replay` against a
//!   data directory written through the store.

mod cli;
