//! The `openguild` binary's tests: the real binary, run as a user would.
//!
//! - `cli`: `events verify|show|tail`, `projections status|rebuild`, `audit replay` against a
//!   data directory written through the store.
//! - `crash`: SIGKILL the server while its projections catch up; after a restart every read
//!   model equals a rebuild.
//! - `dms`: direct messages, group DMs, blocks, a host application's DM, and a DM across hubs.
//! - `reads`: unread and mention counts, read markers synced live, `myEvents` mentions, `Reaction.me`.
//! - `media`: uploads on local disk and in S3 (moto): stripped, attached, served, refused, erased.
//! - `metrics`: `/metrics` parsed as OpenMetrics after a session that moves every metric, and
//!   every metric the Grafana dashboard and the alert rules in `ops/` name is exported.
//! - `outbox`: the federation outbox pull over HTTP.
//! - `federation`: between hubs: the published, self-signed keys, the inbox facing a peer
//!   under the test's control, and two real hubs.
//! - `allowlist`: the peer allowlist changed at run time by signed hub events (GraphQL and
//!   `openguild federation allow|deny`), between real hubs.
//! - `proposals`: the owner's side of proposals, facing a peer under the test's control.
//! - `partition`: two real hubs through `faults`, a proxy that slows, drops, resets and
//!   partitions their traffic; afterwards the peer holds exactly the owner's events.
//! - `shared`: a guild of hub A joined and used from hubs B and C by their users
//!   (proposals): chat, typing, moderation across hubs, and convergence through faults.
//! - `threads`: threads under messages, followed, with the parent's permissions and their refusals.
//! - `three`: three real hubs; a guild's events reach both of its member hubs, one of them
//!   killed and restarted on the way.
//! - `graphql`: the client API over real HTTP and websockets (`support` starts servers).
//! - `hardening`: what hostile tries found (purges, forged tokens, slow clients, throttles,
//!   bounds, settings from the environment), each pinned.
//! - `hub`: hub operators, service tokens and provisioning.
//! - `oidc`: single sign-on through a real OpenID provider (npm `oidc-provider`).
//! - `nodes`: two servers on one PostgreSQL and Redis behave as one hub.
//! - `tidy`: the architecture invariants a program can check.
//! - `webclient`: what the web client needs: its files from `ui_dir`, and the GraphQL it
//!   uses to manage a guild.

mod allowlist;
mod backup;
mod cli;
mod crash;
mod dms;
mod faults;
mod federation;
mod graphql;
mod hardening;
mod hub;
mod matrix;
mod media;
mod metrics;
mod nodes;
mod oidc;
mod ops;
mod otlp;
mod outbox;
mod partition;
mod proposals;
mod reads;
mod shared;
mod support;
mod threads;
mod three;
mod tidy;
mod voice;
mod webclient;
