//! The projections' integration tests, one binary.
//!
//! - `support`: a hub that decides, signs and appends commands to a real store, and dumps
//!   of read model tables.
//! - `rebuild`: live projections equal projections rebuilt from zero (property test).
//! - `consistency`: read-your-writes under load; a projection that meets a bad event stops.
//! - `replay`: `audit replay` at moments of a scripted moderation scenario.
//! - `postgres`: the read models on PostgreSQL, and one node at a time per projection.
//! - `tidy`: checks on the source: module docs, no import circles between modules, and no
//!   read model importing another.

mod consistency;
mod postgres;
mod rebuild;
mod replay;
mod sqlite_build;
mod support;
mod tidy;
