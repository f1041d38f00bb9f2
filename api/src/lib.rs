//! OpenGuild's client API: axum + async-graphql queries, mutations, subscriptions, auth and limits.
//!
//! This crate starts small: later work fills it (see `docs/ARCHITECTURE.md`, code map).
