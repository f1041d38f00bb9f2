//! Projection runner (checkpoints, catch-up, live, rebuild) and OpenGuild's read models.
//!
//! This crate starts small: later work fills it (see `docs/ARCHITECTURE.md`, code map).
