//! Local accounts: a user's own stream (`user:@handle:server`) holds their registration,
//! their password (as an argon2id PHC string, hashed by the caller) and their sessions (as
//! hashes of the bearer tokens, never the tokens), and what they decided about others:
//! whom they blocked, whether strangers may DM them, how far they read each channel.
//!
//! The stream is the account: a handle is taken exactly when its stream exists, so two
//! registrations of one handle race on "no stream yet" and only one can win. User streams
//! stay on their hub; the federation outbox carries guild events only.

use std::collections::{BTreeMap, BTreeSet};

use crate::body::EventBody;
use crate::error::DomainError;
use crate::event::Event;
use crate::ids::{ChannelId, EventId, MessageId, Timestamp, UserId};

/// How long a display name may be, in characters.
pub const MAX_DISPLAY_NAME: usize = 64;

/// One account as its events left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub user: Option<UserId>,
    pub display_name: String,
    /// For a bot: the one guild it may act in.
    pub bot_of: Option<crate::ids::GuildId>,
    /// The password's PHC string; `None` for accounts that only sign in elsewhere.
    pub password: Option<String>,
    /// Live sessions: token hash → expiry.
    pub sessions: BTreeMap<[u8; 32], Timestamp>,
    pub created_at: Timestamp,
    /// Users this account blocked.
    pub blocked: BTreeSet<UserId>,
    /// Refuses DMs opened by people it shares no guild with.
    pub refuses_strangers: bool,
    /// The threads this account follows.
    pub following: BTreeSet<ChannelId>,
    /// Notification levels set per guild and per channel.
    pub guild_levels: BTreeMap<crate::ids::GuildId, crate::body::NotifyLevel>,
    pub channel_levels: BTreeMap<ChannelId, crate::body::NotifyLevel>,
    pub version: u64,
    pub head: Option<EventId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountCommand {
    Register {
        display_name: String,
        password: Option<String>,
        bot_of: Option<crate::ids::GuildId>,
    },
    SetPassword {
        password: String,
    },
    OpenSession {
        token_hash: [u8; 32],
        expires_at: Timestamp,
    },
    RevokeSession {
        token_hash: [u8; 32],
    },
    /// Ends every session (a bot's tokens revoked, or "log out everywhere").
    RevokeAllSessions,
    Block {
        user: UserId,
    },
    Unblock {
        user: UserId,
    },
    SetDmPolicy {
        strangers: bool,
    },
    /// Sets (or with `None` clears) the notification level of a guild or a channel the
    /// user is in (the caller checked).
    SetNotify {
        guild: Option<crate::ids::GuildId>,
        channel: Option<ChannelId>,
        level: Option<crate::body::NotifyLevel>,
    },
    /// Follows or unfollows a thread (the caller checked the user can see it).
    FollowThread {
        thread: ChannelId,
        follow: bool,
    },
    /// Moves the read marker of a channel or DM to `message` (the caller checked the user
    /// may read it and that it is in `channel`).
    MarkRead {
        channel: ChannelId,
        message: MessageId,
    },
}

/// Decides a command on `user`'s account.
pub fn decide(
    account: &Account,
    user: &UserId,
    cmd: &AccountCommand,
    now: Timestamp,
) -> Result<Vec<EventBody>, DomainError> {
    use AccountCommand as C;
    match cmd {
        C::Register { display_name, password, bot_of } => {
            if user.handle().starts_with('_') {
                // `@_services`, `@_console`, `@_oidc`: the hub's own identities, which own and
                // sign things. An account by that name would inherit them.
                return Err(DomainError::invalid("handle", "handles starting with _ are reserved for the hub itself"));
            }
            if account.user.is_some() {
                return Err(DomainError::conflict(format!("the handle {} is taken; choose another", user.handle())));
            }
            let display_name = display_name.trim();
            if display_name.chars().count() > MAX_DISPLAY_NAME {
                return Err(DomainError::invalid(
                    "displayName",
                    format!("must be at most {MAX_DISPLAY_NAME} characters"),
                ));
            }
            let mut bodies =
                vec![EventBody::AccountRegistered { display_name: display_name.to_owned(), bot_of: *bot_of }];
            if let Some(phc) = password {
                bodies.push(EventBody::PasswordSet { phc: phc.clone() });
            }
            Ok(bodies)
        }
        _ if account.user.is_none() => Err(DomainError::not_found("user", user)),
        C::SetPassword { password } => Ok(vec![EventBody::PasswordSet { phc: password.clone() }]),
        C::OpenSession { token_hash, expires_at } => {
            if *expires_at <= now {
                return Err(DomainError::invalid("expiresAt", "a session must expire in the future"));
            }
            Ok(vec![EventBody::SessionOpened { token_hash: *token_hash, expires_at: *expires_at }])
        }
        C::RevokeSession { token_hash } => {
            if !account.sessions.contains_key(token_hash) {
                return Err(DomainError::not_found("session", "with that token"));
            }
            Ok(vec![EventBody::SessionRevoked { token_hash: *token_hash }])
        }
        C::Block { user: other } => {
            if other == user {
                return Err(DomainError::invalid("userId", "you cannot block yourself"));
            }
            if account.blocked.contains(other) {
                return Err(DomainError::conflict(format!("you already blocked {other}")));
            }
            Ok(vec![EventBody::Blocked { user: other.clone() }])
        }
        C::Unblock { user: other } => {
            if !account.blocked.contains(other) {
                return Err(DomainError::not_found("blocked user", other));
            }
            Ok(vec![EventBody::Unblocked { user: other.clone() }])
        }
        C::SetDmPolicy { strangers } => {
            if account.refuses_strangers != *strangers {
                return Ok(Vec::new());
            }
            Ok(vec![EventBody::DmPolicySet { strangers: *strangers }])
        }
        C::SetNotify { guild, channel, level } => {
            if guild.is_some() == channel.is_some() {
                return Err(DomainError::invalid("guildId", "name a guild or a channel, not both or neither"));
            }
            Ok(vec![EventBody::NotifySet { guild: *guild, channel: *channel, level: *level }])
        }
        C::FollowThread { thread, follow } => {
            if account.following.contains(thread) == *follow {
                return Ok(Vec::new());
            }
            Ok(vec![EventBody::ThreadFollowed { thread: *thread, follow: *follow }])
        }
        C::MarkRead { channel, message } => Ok(vec![EventBody::Read { channel: *channel, message: *message }]),
        C::RevokeAllSessions => Ok(account
            .sessions
            .keys()
            .map(|token_hash| EventBody::SessionRevoked { token_hash: *token_hash })
            .collect()),
    }
}

/// Applies one event of the account's stream.
pub fn evolve(mut account: Account, event: &Event) -> Account {
    account.version = event.core.seq;
    account.head = Some(event.id);
    match event.content() {
        EventBody::AccountRegistered { display_name, bot_of } => {
            account.user = Some(event.core.sender.clone());
            account.display_name = display_name.clone();
            account.bot_of = *bot_of;
            account.created_at = event.core.ts;
        }
        EventBody::PasswordSet { phc } => account.password = Some(phc.clone()),
        EventBody::SessionOpened { token_hash, expires_at } => {
            // Expired sessions are forgotten as time (as the events tell it) moves on.
            account.sessions.retain(|_, expiry| *expiry > event.core.ts);
            account.sessions.insert(*token_hash, *expires_at);
        }
        EventBody::SessionRevoked { token_hash } => {
            account.sessions.remove(token_hash);
        }
        EventBody::Blocked { user } => {
            account.blocked.insert(user.clone());
        }
        EventBody::Unblocked { user } => {
            account.blocked.remove(user);
        }
        EventBody::DmPolicySet { strangers } => account.refuses_strangers = !strangers,
        EventBody::NotifySet { guild, channel, level } => match (guild, channel, level) {
            (Some(g), _, Some(l)) => {
                account.guild_levels.insert(*g, *l);
            }
            (Some(g), _, None) => {
                account.guild_levels.remove(g);
            }
            (None, Some(c), Some(l)) => {
                account.channel_levels.insert(*c, *l);
            }
            (None, Some(c), None) => {
                account.channel_levels.remove(c);
            }
            (None, None, _) => {}
        },
        EventBody::ThreadFollowed { thread, follow } => {
            if *follow {
                account.following.insert(*thread);
            } else {
                account.following.remove(thread);
            }
        }
        _ => {}
    }
    account
}

impl Account {
    /// The level that holds in `channel` of `guild`: the channel's own, else the guild's,
    /// else `All`.
    pub fn notify_level(&self, guild: crate::ids::GuildId, channel: Option<ChannelId>) -> crate::body::NotifyLevel {
        channel
            .and_then(|c| self.channel_levels.get(&c))
            .or_else(|| self.guild_levels.get(&guild))
            .copied()
            .unwrap_or_default()
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Account {
        events.into_iter().fold(Account::default(), evolve)
    }

    /// Whether a session with this token hash is open at `now`.
    pub fn session_valid(&self, token_hash: &[u8; 32], now: Timestamp) -> bool {
        self.sessions.get(token_hash).is_some_and(|expiry| *expiry > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hubs_own_identities_cannot_be_registered() {
        for handle in ["_services", "_console", "_x"] {
            let user: UserId = format!("@{handle}:hub.test").parse().unwrap();
            let cmd = AccountCommand::Register { display_name: "x".into(), password: None, bot_of: None };
            let err = decide(&Account::default(), &user, &cmd, Timestamp::default()).unwrap_err();
            assert!(matches!(err, DomainError::InvalidInput { field: "handle", .. }), "{handle}: {err}");
        }
        let ok: UserId = "@ann:hub.test".parse().unwrap();
        let cmd = AccountCommand::Register { display_name: "Ann".into(), password: None, bot_of: None };
        assert!(decide(&Account::default(), &ok, &cmd, Timestamp::default()).is_ok());
    }
}
