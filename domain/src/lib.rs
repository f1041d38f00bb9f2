//! OpenGuild's pure core: ids, permissions, commands, events, `decide`/`evolve` and the
//! signed-event format.
//!
//! **Architecture invariant:** this crate does no I/O: no tokio, no sqlx, no clock, no
//! randomness. Time, fresh ids and nonces are passed in. It fails only by returning an
//! error value.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod account;
pub mod body;
pub mod canonical;
pub mod channel;
pub mod error;
pub mod event;
pub mod guild;
pub mod hub;
pub mod ids;
pub mod permissions;
pub mod proposal;
pub mod replica;
pub mod validate;
pub mod voice;

pub use body::{ChannelKind, EventBody, Place, ReportAction, ReportTarget};
pub use error::{DomainError, IdError, Refusal};
pub use event::{Event, EventCore, KeyRing, RawEvent, ServerKey, SignedEvent, UnsignedEvent, VerifyError};
pub use ids::{
    CategoryId, ChannelId, EventId, GuildId, InviteCode, KeyId, MediaId, MessageId, ReportId, RoleId, ServerName,
    StreamId, Timestamp, UserId,
};
pub use permissions::Permissions;
