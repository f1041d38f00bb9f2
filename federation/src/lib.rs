//! Server keys, signed transactions, the outbox sender, inbox verification and the peer allowlist.
//!
//! This crate starts small: later work fills it (see `docs/ARCHITECTURE.md`, code map).
