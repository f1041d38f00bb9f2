//! Voice channels: LiveKit access tokens, webhooks and room service calls.
//!
//! This crate starts small: later work fills it (see `docs/ARCHITECTURE.md`, code map).
