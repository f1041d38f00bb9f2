//! The domain's integration tests, one binary (as ripgrep's `tests/tests.rs`).
//!
//! - `support`: a small world that decides, signs and folds events, and the `check` helper.
//! - `guild`: every guild command's happy path and refusals, given/when/then.
//! - `messages`: every message command's happy path and refusals.
//! - `hub`: the hub's policy: each rule, as every kind of actor is told it.
//! - `proposal`: what a member of another hub may propose, and how replicas check its seal.
//! - `signing`: signing, verification, erasure, upcasting, non-canonical bytes.
//! - `properties`: proptest properties of encoding, signatures and accepted names.
//! - `tidy`: checks on the source: module docs, and no import circles between modules.

mod guild;
mod hub;
mod messages;
mod properties;
mod proposal;
mod replica;
mod signing;
mod support;
mod tidy;
mod voice;
