//! Voice channels on LiveKit: the access tokens OpenGuild issues ([`token`]), the webhooks
//! the SFU sends back ([`webhook`]) and the RoomService calls moderation makes ([`room`]).
//!
//! OpenGuild carries no media. It decides who may join, speak and stay (the domain's
//! `voice` module), and tells LiveKit; LiveKit tells it who is in each room. One LiveKit
//! room per voice channel, named by the channel's id ([`room_of`]).

pub mod room;
pub mod token;
pub mod webhook;

use std::fmt;
use std::time::Duration;

use openguild_domain::ChannelId;
use serde::{Deserialize, Serialize};

pub use room::Sfu;
pub use token::Ticket;
pub use webhook::{Report, Webhooks};

/// `[voice]`: where the hub's LiveKit is and the key it shares with it. Empty `url`: voice is
/// unavailable (voice channels still exist; joining answers `VOICE_UNAVAILABLE`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct VoiceSettings {
    /// The LiveKit URL clients connect to (`wss://voice.example.org`); the RoomService is
    /// called at the same host over HTTP(S).
    pub url: String,
    /// The API key LiveKit knows OpenGuild by (the `keys:` entry of its configuration).
    pub api_key: String,
    /// The API key's secret: it signs access tokens and checks LiveKit's webhooks.
    pub api_secret: Secret,
    /// How long an access token may be used to join (a session outlives it; moderation ends
    /// sessions through the RoomService).
    pub token_ttl_seconds: u64,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        Self { url: String::new(), api_key: String::new(), api_secret: Secret::default(), token_ttl_seconds: 600 }
    }
}

impl VoiceSettings {
    /// Whether voice is set up, and if half set up, what is missing.
    pub fn check(&self) -> Result<bool, String> {
        let given = [!self.url.is_empty(), !self.api_key.is_empty(), !self.api_secret.0.is_empty()];
        if given.iter().all(|g| !g) {
            return Ok(false);
        }
        if given.iter().any(|g| !g) {
            return Err("[voice] needs url, api_key and api_secret together (OPENGUILD_VOICE_URL, \
                 OPENGUILD_VOICE_API_KEY, OPENGUILD_VOICE_API_SECRET); leave all three empty for no voice"
                .into());
        }
        if !["ws://", "wss://", "http://", "https://"].iter().any(|s| self.url.starts_with(s)) {
            return Err(format!("[voice] url {:?} must start with wss:// (or ws:// on a test machine)", self.url));
        }
        if self.token_ttl_seconds == 0 || self.token_ttl_seconds > 86_400 {
            return Err("[voice] token_ttl_seconds must be 1 to 86400".into());
        }
        Ok(true)
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_seconds)
    }
}

/// A value that never prints.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

/// The LiveKit room of a voice channel.
pub fn room_of(channel: ChannelId) -> String {
    channel.to_string()
}

/// The voice channel a LiveKit room is, if it is one of ours.
pub fn channel_of(room: &str) -> Option<ChannelId> {
    room.parse().ok()
}

/// Why a voice call failed.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("signing the access token failed: {0}")]
    Token(String),
    #[error("LiveKit's RoomService refused or failed `{call}`: {why}")]
    Service { call: &'static str, why: String },
}
