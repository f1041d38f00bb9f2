//! Identifiers and other small values that parse, not validate later: a `UserId` that
//! exists is a valid user id.
//!
//! Every id serialises as its text form, so the canonical MessagePack of an event and its
//! JSON dump show the same strings.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that did not parse: which kind of value, the text, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {why}")]
pub struct IdError {
    pub what: &'static str,
    pub text: String,
    pub why: String,
}

impl IdError {
    pub fn new(what: &'static str, text: &str, why: &str) -> Self {
        // Long input is cut so an error never echoes a megabyte back.
        let text: String = text.chars().take(80).collect();
        Self { what, text, why: why.to_owned() }
    }
}

/// Implements `Display`, `FromStr` based `Serialize`/`Deserialize` for a text-form id.
macro_rules! text_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A hub's name: a DNS name, an IPv4 address or a bracketed IPv6 address, with an
/// optional port. Lowercase only, so that one server has one name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerName(String);

impl ServerName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServerName {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = |why: &str| IdError::new("server name", s, why);
        if s.is_empty() || s.len() > 255 {
            return Err(bad("must be 1 to 255 characters"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let end = rest.find(']').ok_or_else(|| bad("an IPv6 address needs a closing ']'"))?;
            let (ip, after) = rest.split_at(end);
            ip.parse::<Ipv6Addr>().map_err(|_| bad("not a valid IPv6 address"))?;
            let after = &after[1..];
            match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None if after.is_empty() => (None, None),
                None => return Err(bad("unexpected text after the IPv6 address")),
            }
        } else {
            match s.rsplit_once(':') {
                Some((host, port)) => (Some(host), Some(port)),
                None => (Some(s), None),
            }
        };
        if let Some(port) = port {
            let valid = !port.is_empty()
                && !port.starts_with('0')
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p > 0);
            if !valid {
                return Err(bad("the port must be a number from 1 to 65535"));
            }
        }
        if let Some(host) = host {
            let is_ipv4 = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            if is_ipv4 {
                // std refuses leading zeros, so each address has one spelling.
                host.parse::<Ipv4Addr>().map_err(|_| bad("not a valid IPv4 address"))?;
            } else if !is_dns_name(host) {
                return Err(bad(
                    "must be a lowercase DNS name (labels of a-z, 0-9 and '-'), an IPv4 address or [IPv6]",
                ));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

text_serde!(ServerName);

/// A user: `@handle:server`, where the handle is 1 to 64 characters of `a-z0-9._=-`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId {
    full: String,
    colon: usize,
}

impl UserId {
    pub fn new(handle: &str, server: &ServerName) -> Result<Self, IdError> {
        format!("@{handle}:{server}").parse()
    }

    pub fn handle(&self) -> &str {
        &self.full[1..self.colon]
    }

    pub fn server(&self) -> ServerName {
        ServerName(self.full[self.colon + 1..].to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
}

/// Checks a local handle: 1 to 64 characters of `a-z0-9._=-`.
pub fn validate_handle(handle: &str) -> Result<(), IdError> {
    let valid_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-".contains(&b);
    if handle.is_empty() || handle.len() > 64 {
        return Err(IdError::new("handle", handle, "must be 1 to 64 characters"));
    }
    if !handle.bytes().all(valid_char) {
        return Err(IdError::new("handle", handle, "may only use lowercase letters, digits and . _ = -"));
    }
    Ok(())
}

impl FromStr for UserId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let rest = s.strip_prefix('@').ok_or_else(|| IdError::new("user id", s, "must look like @handle:server"))?;
        let colon = rest.find(':').ok_or_else(|| IdError::new("user id", s, "must look like @handle:server"))?;
        let (handle, server) = rest.split_at(colon);
        validate_handle(handle)?;
        ServerName::from_str(&server[1..])?;
        Ok(Self { full: s.to_owned(), colon: colon + 1 })
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

text_serde!(UserId);

/// Implements serde for a fixed-size binary id: its text form in human-readable formats
/// (JSON), MessagePack `bin` otherwise — compact, and no base58 work on the hot path.
macro_rules! binary_serde {
    ($ty:ty, $n:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() { s.collect_str(self) } else { s.serialize_bytes(&self.0) }
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                    text.parse().map_err(serde::de::Error::custom)
                } else {
                    crate::canonical::bytes::deserialize::<D, $n>(d).map(Self)
                }
            }
        }
    };
}

/// Declares a 128-bit id written in base58, made by the caller (random) or derived from a
/// hash. The domain never invents ids: commands carry them.
macro_rules! id128 {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 16]);

        impl $name {
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                let mut bytes = [0u8; 16];
                match bs58::decode(s).onto(&mut bytes) {
                    Ok(16) if bs58::encode(bytes).into_string() == s => Ok(Self(bytes)),
                    _ => Err(IdError::new($what, s, "must be 16 bytes in base58")),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&bs58::encode(self.0).into_string())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        binary_serde!($name, 16);
    };
}

id128!(
    /// A guild, named by the hash of its create event's body (see [`crate::event::guild_id_for`]).
    GuildId,
    "guild id"
);
id128!(
    /// A channel (text, voice or announcement).
    ChannelId,
    "channel id"
);
id128!(
    /// A category that groups channels.
    CategoryId,
    "category id"
);
id128!(
    /// A role. [`RoleId::EVERYONE`] is the role every member has.
    RoleId,
    "role id"
);
id128!(
    /// A report filed against a message or a member.
    ReportId,
    "report id"
);
id128!(
    /// A direct-message conversation.
    DmId,
    "dm id"
);
id128!(
    /// An uploaded file (`POST /media/upload`), attached to at most one message.
    MediaId,
    "media id"
);

impl RoleId {
    /// `@everyone`: the same id in every guild, like Discord's role named after its guild.
    pub const EVERYONE: RoleId = RoleId([0; 16]);
}

/// An event's id: `$` and the base58 of the blake3 hash of its canonical signed bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId([u8; 32]);

impl EventId {
    pub const fn from_hash(hash: [u8; 32]) -> Self {
        Self(hash)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for EventId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::new("event id", s, "must be '$' and 32 bytes in base58");
        let b58 = s.strip_prefix('$').ok_or_else(bad)?;
        let mut bytes = [0u8; 32];
        match bs58::decode(b58).onto(&mut bytes) {
            Ok(32) if bs58::encode(bytes).into_string() == b58 => Ok(Self(bytes)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

binary_serde!(EventId, 32);

/// A message is named by the id of the event that posted it, as in Matrix.
pub type MessageId = EventId;

/// An invite code: 4 to 32 ASCII letters and digits, chosen by the caller.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InviteCode(String);

impl InviteCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InviteCode {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if (4..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::new("invite code", s, "must be 4 to 32 letters and digits"))
        }
    }
}

impl fmt::Display for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

text_serde!(InviteCode);

/// A server signing key's id, the part after `ed25519:` (e.g. `ed25519:a1`): 1 to 32
/// characters of `a-zA-Z0-9_`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let version =
            s.strip_prefix("ed25519:").ok_or_else(|| IdError::new("key id", s, "must start with 'ed25519:'"))?;
        if (1..=32).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::new("key id", s, "must be 'ed25519:' and 1 to 32 of a-zA-Z0-9_"))
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

text_serde!(KeyId);

/// Milliseconds since the Unix epoch. Bounded by 2^53 - 1 so that every timestamp is exact
/// in JavaScript and JSON clients. The domain never reads a clock: time is passed in.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const MAX: Timestamp = Timestamp((1 << 53) - 1);

    pub fn from_millis(ms: u64) -> Result<Self, IdError> {
        if ms <= Self::MAX.0 {
            Ok(Self(ms))
        } else {
            Err(IdError::new("timestamp", &ms.to_string(), "must be at most 2^53 - 1 ms"))
        }
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This time plus `ms`, saturating at [`Timestamp::MAX`].
    pub fn plus_millis(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms).min(Self::MAX.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_millis(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A stream: the consistency boundary events are appended to.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamId {
    /// Governance of one guild: channels, roles, membership, moderation, reports.
    Guild(GuildId),
    /// Messages of one channel.
    Channel(ChannelId),
    /// One account: identities, profile, tokens.
    User(UserId),
    /// One direct-message conversation.
    Dm(DmId),
    /// The hub itself: operators, hub-wide bans, peers, key rotation.
    Hub,
}

impl FromStr for StreamId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s == "hub" {
            return Ok(Self::Hub);
        }
        let bad = || IdError::new("stream id", s, "must be hub, guild:<id>, channel:<id>, user:<user id> or dm:<id>");
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        Ok(match kind {
            "guild" => Self::Guild(rest.parse()?),
            "channel" => Self::Channel(rest.parse()?),
            "user" => Self::User(rest.parse()?),
            "dm" => Self::Dm(rest.parse()?),
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Guild(id) => write!(f, "guild:{id}"),
            Self::Channel(id) => write!(f, "channel:{id}"),
            Self::User(id) => write!(f, "user:{id}"),
            Self::Dm(id) => write!(f, "dm:{id}"),
            Self::Hub => f.write_str("hub"),
        }
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The binary (MessagePack) form of a stream id: a tagged id, no text parsing.
#[derive(Serialize)]
enum StreamRef<'a> {
    #[serde(rename = "guild")]
    Guild(&'a GuildId),
    #[serde(rename = "channel")]
    Channel(&'a ChannelId),
    #[serde(rename = "user")]
    User(&'a UserId),
    #[serde(rename = "dm")]
    Dm(&'a DmId),
    #[serde(rename = "hub")]
    Hub,
}

#[derive(Deserialize)]
enum StreamRepr {
    #[serde(rename = "guild")]
    Guild(GuildId),
    #[serde(rename = "channel")]
    Channel(ChannelId),
    #[serde(rename = "user")]
    User(UserId),
    #[serde(rename = "dm")]
    Dm(DmId),
    #[serde(rename = "hub")]
    Hub,
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return s.collect_str(self);
        }
        match self {
            Self::Guild(id) => StreamRef::Guild(id),
            Self::Channel(id) => StreamRef::Channel(id),
            Self::User(id) => StreamRef::User(id),
            Self::Dm(id) => StreamRef::Dm(id),
            Self::Hub => StreamRef::Hub,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            return text.parse().map_err(serde::de::Error::custom);
        }
        Ok(match StreamRepr::deserialize(d)? {
            StreamRepr::Guild(id) => Self::Guild(id),
            StreamRepr::Channel(id) => Self::Channel(id),
            StreamRepr::User(id) => Self::User(id),
            StreamRepr::Dm(id) => Self::Dm(id),
            StreamRepr::Hub => Self::Hub,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_parse_and_refuse_with_reasons() {
        let id: UserId = "@alice.b=c-d_e:hub.example.org:8448".parse().unwrap();
        assert_eq!(id.handle(), "alice.b=c-d_e");
        assert_eq!(id.server().as_str(), "hub.example.org:8448");
        for ok in ["@a:localhost", "@x:127.0.0.1", "@x:[::1]:8080", "@0:a-b.c"] {
            assert!(ok.parse::<UserId>().is_ok(), "{ok}");
        }
        let long = format!("@{}:x", "a".repeat(65));
        for bad in [
            "alice:x",
            "@:x",
            "@Alice:x",
            "@a b:x",
            "@a",
            "@a:",
            "@a:Host",
            "@a:-x.org",
            "@a:x:0",
            "@a:x:08",
            "@a:x:70000",
            "@a:[::1",
            "@a:1.2.3.04",
            long.as_str(),
        ] {
            assert!(bad.parse::<UserId>().is_err(), "{bad} should be refused");
        }
        let err = "@Alice:x".parse::<UserId>().unwrap_err();
        assert_eq!(err.to_string(), "invalid handle \"Alice\": may only use lowercase letters, digits and . _ = -");
    }

    #[test]
    fn ids_round_trip_through_text_and_refuse_other_spellings() {
        let g = GuildId::from_bytes([7; 16]);
        assert_eq!(g.to_string().parse::<GuildId>().unwrap(), g);
        let e = EventId::from_hash([0; 32]);
        assert_eq!(e.to_string().parse::<EventId>().unwrap(), e);
        assert!("abc".parse::<GuildId>().is_err());
        assert!("0OIl".parse::<GuildId>().is_err());
        let s: StreamId = format!("guild:{g}").parse().unwrap();
        assert_eq!(s, StreamId::Guild(g));
        assert_eq!("hub".parse::<StreamId>().unwrap(), StreamId::Hub);
        assert!("room:x".parse::<StreamId>().is_err());
        assert!(Timestamp::from_millis(1 << 53).is_err());
    }
}
