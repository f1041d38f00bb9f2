//! The event store's integration tests, one binary.
//!
//! - `support`: backends (a temp-dir SQLite file, a fresh PostgreSQL database per test) and
//!   signed event chains.
//! - `conformance`: the contract every adapter passes, run against each backend.
//! - `crash`: SIGKILL a writer mid-flight; every acknowledged event survives.
//! - `backup`: the backup file's reader refuses cut and changed files.
//! - `faults`: files that are not ours, corrupt or newer; oversized events; bad imports.

mod backup;
mod conformance;
mod crash;
mod faults;
mod support;
