//! The GraphQL object types. Guild structure (channels, roles, members, bans) is served
//! from the guild aggregate: the same state `decide` and the permission checks use.
//! History-shaped data (messages, audit log, reports, search) comes from the read models.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{ComplexObject, Context, Enum, ID, Object, Scalar, ScalarType, SimpleObject, Value};
use openguild_domain::guild::Guild;
use openguild_domain::permissions::{Reason, Scope};
use openguild_domain::{ChannelId, ChannelKind as Kind, Permissions, RoleId, Timestamp, UserId};
use openguild_projections::queries::{self, MessageRow, Page};

use super::{api, now, viewer};
use crate::errors::{ApiError, Res};

/// A moment, as RFC 3339 text in UTC with milliseconds (`2026-11-21T10:00:00.000Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime(pub u64);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> async_graphql::InputValueResult<Self> {
        match &value {
            Value::String(s) => humantime::parse_rfc3339_weak(s)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| DateTime(d.as_millis() as u64))
                .ok_or_else(|| {
                    async_graphql::InputValueError::custom("expected RFC 3339 time like 2026-11-21T10:00:00Z")
                }),
            _ => Err(async_graphql::InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0);
        Value::String(humantime::format_rfc3339_millis(t).to_string())
    }
}

impl From<Timestamp> for DateTime {
    fn from(t: Timestamp) -> Self {
        DateTime(t.as_millis())
    }
}

macro_rules! permission_enum {
    ($($name:ident),* $(,)?) => {
        /// One permission bit, with Discord's names.
        #[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        pub enum Permission { $($name),* }

        impl Permission {
            pub fn bits(self) -> Permissions {
                match self { $(Permission::$name => Permissions::$name),* }
            }

            pub fn all_of(p: Permissions) -> Vec<Permission> {
                let mut out = Vec::new();
                $(if p.contains(Permissions::$name) { out.push(Permission::$name); })*
                out
            }
        }
    };
}

permission_enum!(
    CREATE_INVITE,
    KICK_MEMBERS,
    BAN_MEMBERS,
    ADMINISTRATOR,
    MANAGE_CHANNELS,
    MANAGE_GUILD,
    ADD_REACTIONS,
    VIEW_AUDIT_LOG,
    STREAM,
    VIEW_CHANNEL,
    SEND_MESSAGES,
    MANAGE_MESSAGES,
    ATTACH_FILES,
    READ_MESSAGE_HISTORY,
    MENTION_EVERYONE,
    CONNECT,
    SPEAK,
    MUTE_MEMBERS,
    DEAFEN_MEMBERS,
    MOVE_MEMBERS,
    MANAGE_ROLES,
    CREATE_PUBLIC_THREADS,
    SEND_MESSAGES_IN_THREADS,
    MODERATE_MEMBERS,
);

pub fn permissions_of(list: &[Permission]) -> Permissions {
    list.iter().fold(Permissions::empty(), |acc, p| acc | p.bits())
}

/// What a channel is for: text chat, voice, or announcements in a guild; or a direct
/// message (`DM` between two people, `GROUP_DM` among up to ten), outside any guild.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "Kind")]
pub enum ChannelKind {
    Text,
    Voice,
    Announcement,
    Dm,
    GroupDm,
    /// A thread: a channel under a message of its parent channel.
    Thread,
}

/// How much of a guild or channel is news to the viewer: every message, only mentions (of
/// them, a role of theirs, or everyone), or nothing. `myEvents` brings no mentions from
/// where it is `NONE`; clients show badges accordingly.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "openguild_domain::body::NotifyLevel")]
pub enum NotificationLevel {
    All,
    Mentions,
    None,
}

/// A person (or bot) on some hub.
#[derive(Clone, Debug)]
pub struct User(pub UserId);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.to_string())
    }
    /// The handle: the part of the id between `@` and `:`.
    async fn handle(&self) -> &str {
        self.0.handle()
    }
    /// The hub the user belongs to.
    async fn server(&self) -> String {
        self.0.server().to_string()
    }
}

#[derive(SimpleObject)]
pub struct Session {
    /// The bearer token: send it as `Authorization: Bearer <token>`. Shown once.
    pub token: String,
    pub user: User,
}

/// A guild as seen by one member.
pub struct GuildObj {
    pub g: Arc<Guild>,
    pub viewer: UserId,
}

/// The roles `user` holds in `g` (whose mentions are theirs).
fn viewer_roles(g: &Guild, user: &UserId) -> Vec<RoleId> {
    g.members.get(user).map(|m| m.roles.iter().copied().collect()).unwrap_or_default()
}

impl GuildObj {
    /// The viewer's unread and mention counts summed over the channels they can see.
    async fn read_totals(&self, ctx: &Context<'_>) -> Result<(i32, i32), ApiError> {
        let now = now();
        let visible: Vec<ChannelId> = self
            .g
            .channels
            .keys()
            .filter(|id| self.g.channel_permissions(&self.viewer, **id, now).contains(Permissions::VIEW_CHANNEL))
            .copied()
            .collect();
        let api = api(ctx);
        api.read_your_writes(ctx, &["reads", "timeline"]).await?;
        let roles = viewer_roles(&self.g, &self.viewer);
        let states = queries::read_states_with_roles(api.projections.db(), &self.viewer, &roles, &visible).await?;
        Ok(states.iter().fold((0, 0), |(u, m), s| (u + s.unread as i32, m + s.mentions as i32)))
    }
}

#[Object(name = "Guild")]
impl GuildObj {
    async fn id(&self) -> ID {
        ID(self.g.id.map(|g| g.to_string()).unwrap_or_default())
    }
    async fn name(&self) -> &str {
        &self.g.name
    }
    async fn description(&self) -> Option<&str> {
        self.g.description.as_deref()
    }
    async fn owner(&self) -> Option<User> {
        self.g.owner.clone().map(User)
    }
    async fn created_at(&self) -> DateTime {
        self.g.created_at.into()
    }
    async fn archived(&self) -> bool {
        self.g.archived
    }
    /// Categories, by position.
    async fn categories(&self) -> Vec<Category> {
        let mut out: Vec<Category> = self
            .g
            .categories
            .iter()
            .map(|(id, c)| Category { id: ID(id.to_string()), name: c.name.clone(), position: c.position })
            .collect();
        out.sort_by_key(|c| c.position);
        out
    }
    /// The channels the viewer can see, by category and position.
    async fn channels(&self, ctx: &Context<'_>) -> Res<Vec<ChannelObj>> {
        let now = now();
        let mut ids: Vec<(Option<u32>, u32, ChannelId)> = self
            .g
            .channels
            .iter()
            // Threads are listed under their channel (`Channel.threads`).
            .filter(|(_, c)| c.thread.is_none())
            .filter(|(id, _)| self.g.channel_permissions(&self.viewer, **id, now).contains(Permissions::VIEW_CHANNEL))
            .map(|(id, c)| (c.category.and_then(|k| self.g.categories.get(&k)).map(|k| k.position), c.position, *id))
            .collect();
        ids.sort();
        // Asked for every channel, the newest messages come from one query, not one each.
        let last: Option<HashMap<ChannelId, u64>> = if ctx.look_ahead().field("lastMessageCursor").exists() {
            let api = api(ctx);
            api.read_your_writes(ctx, &["timeline"]).await?;
            let channels: Vec<ChannelId> = ids.iter().map(|(_, _, id)| *id).collect();
            let found =
                queries::last_message_positions(api.projections.db(), &channels).await.map_err(ApiError::from)?;
            Some(found.into_iter().collect())
        } else {
            None
        };
        Ok(ids
            .into_iter()
            .map(|(_, _, id)| ChannelObj {
                last_message: last.as_ref().map(|l| l.get(&id).copied()),
                ..ChannelObj::new(self.g.clone(), id, self.viewer.clone())
            })
            .collect())
    }
    /// The viewer's notification level here (set with `setNotificationLevel`; `ALL` unless set).
    async fn notification_level(&self, ctx: &Context<'_>) -> Res<NotificationLevel> {
        let Some(id) = self.g.id else { return Ok(NotificationLevel::All) };
        Ok(api(ctx).notify_level(&self.viewer, id, None).await?.into())
    }
    /// Unread messages in the channels the viewer can see (each counted up to 1,000).
    async fn unread_count(&self, ctx: &Context<'_>) -> Res<i32> {
        Ok(self.read_totals(ctx).await?.0)
    }
    /// Unread messages that mention the viewer, a role of theirs or everyone.
    async fn mention_count(&self, ctx: &Context<'_>) -> Res<i32> {
        Ok(self.read_totals(ctx).await?.1)
    }
    /// Roles, highest first; `@everyone` last.
    async fn roles(&self) -> Vec<RoleObj> {
        roles_of(&self.g)
    }
    /// Members, in the order they joined.
    #[graphql(complexity = "page_cost(first, None, 100, child_complexity)")]
    async fn members(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Res<Connection<String, MemberObj>> {
        let first = page_size(first, 100, 1000)?;
        let mut all: Vec<(&UserId, &openguild_domain::guild::Member)> = self.g.members.iter().collect();
        all.sort_by(|a, b| (a.1.joined_at, a.0).cmp(&(b.1.joined_at, b.0)));
        let start = match after {
            Some(cursor) => all.iter().position(|(u, _)| u.as_str() == cursor).map_or(all.len(), |i| i + 1),
            None => 0,
        };
        let page: Vec<_> = all.iter().skip(start).take(first).collect();
        let mut conn = Connection::new(start > 0, start + page.len() < all.len());
        let now = now();
        let users: Vec<&UserId> = page.iter().map(|(u, _)| *u).collect();
        // Presence costs a Redis read with several nodes: only when it is asked for.
        let look = ctx.look_ahead();
        let asked =
            look.field("edges").field("node").field("online").exists() || look.field("nodes").field("online").exists();
        let online = if asked { api(ctx).online(&users).await } else { vec![false; users.len()] };
        for ((user, m), online) in page.into_iter().zip(online) {
            conn.edges.push(Edge::new(user.to_string(), member_obj(&self.g, user, m, now, online)));
        }
        Ok(conn)
    }
    /// The viewer's own membership: their roles, nickname, and whether they are timed out.
    async fn me(&self, ctx: &Context<'_>) -> Option<MemberObj> {
        let m = self.g.members.get(&self.viewer)?;
        let online = ctx.look_ahead().field("online").exists() && api(ctx).online(&[&self.viewer]).await[0];
        Some(member_obj(&self.g, &self.viewer, m, now(), online))
    }
    /// Banned users (needs BAN_MEMBERS).
    async fn bans(&self) -> Res<Vec<BanObj>> {
        if !self.g.guild_permissions(&self.viewer, now()).contains(Permissions::BAN_MEMBERS) {
            return Err(ApiError::forbidden("seeing the bans needs the BAN_MEMBERS permission").into());
        }
        Ok(self
            .g
            .bans
            .iter()
            .map(|(u, b)| BanObj {
                user: User(u.clone()),
                reason: b.reason.clone(),
                by: User(b.by.clone()),
                at: b.at.into(),
            })
            .collect())
    }
    /// Open invites (needs MANAGE_GUILD, or CREATE_INVITE for one's own).
    async fn invites(&self) -> Vec<InviteObj> {
        let perms = self.g.guild_permissions(&self.viewer, now());
        self.g
            .invites
            .iter()
            .filter(|(_, i)| perms.contains(Permissions::MANAGE_GUILD) || i.creator == self.viewer)
            .map(|(code, i)| InviteObj {
                code: code.to_string(),
                max_uses: i.max_uses.map(|u| u as i32),
                uses: i.uses as i32,
                expires_at: i.expires_at.map(Into::into),
                creator: User(i.creator.clone()),
            })
            .collect()
    }
    /// What the viewer may do guild-wide.
    async fn my_permissions(&self) -> Vec<Permission> {
        Permission::all_of(self.g.guild_permissions(&self.viewer, now()))
    }
}

fn member_obj(
    g: &Guild,
    user: &UserId,
    m: &openguild_domain::guild::Member,
    now: Timestamp,
    online: bool,
) -> MemberObj {
    MemberObj {
        online,
        user: User(user.clone()),
        nickname: m.nickname.clone(),
        joined_at: m.joined_at.into(),
        roles: m.roles.iter().map(|r| ID(r.to_string())).collect(),
        timed_out_until: g.timed_out_until(user, now).map(Into::into),
    }
}

/// Roles, highest first; `@everyone` last.
pub fn roles_of(g: &Guild) -> Vec<RoleObj> {
    let mut out: Vec<RoleObj> = g.role_order.iter().rev().filter_map(|r| role_obj(g, *r)).collect();
    out.extend(role_obj(g, RoleId::EVERYONE));
    out
}

pub fn role_obj(g: &Guild, id: RoleId) -> Option<RoleObj> {
    g.roles.get(&id).map(|r| RoleObj {
        id: ID(id.to_string()),
        name: r.name.clone(),
        permissions: Permission::all_of(r.permissions),
        position: g.position(&id) as i32,
    })
}

/// What a page costs in the complexity estimate, made before the arguments are checked: a
/// negative size costs nothing here (the field refuses it as `INVALID_INPUT`), a huge one
/// cannot overflow.
pub fn page_cost(first: Option<i32>, last: Option<i32>, default: i32, child: usize) -> usize {
    let n = first.or(last).unwrap_or(default).max(0);
    usize::try_from(n).unwrap_or(usize::MAX).saturating_mul(child)
}

pub fn page_size(n: Option<i32>, default: usize, max: usize) -> Result<usize, ApiError> {
    match n {
        None => Ok(default),
        Some(n) if n >= 0 && (n as usize) <= max => Ok(n as usize),
        Some(n) => Err(ApiError::invalid("page size", format!("{n} is not between 0 and {max}"))),
    }
}

#[derive(SimpleObject)]
pub struct Category {
    pub id: ID,
    pub name: String,
    pub position: u32,
}

#[derive(SimpleObject)]
#[graphql(name = "Role")]
pub struct RoleObj {
    pub id: ID,
    pub name: String,
    pub permissions: Vec<Permission>,
    /// 0 for `@everyone`; higher is more senior.
    pub position: i32,
}

#[derive(SimpleObject)]
#[graphql(name = "Member")]
pub struct MemberObj {
    pub user: User,
    pub nickname: Option<String>,
    pub joined_at: DateTime,
    pub roles: Vec<ID>,
    pub timed_out_until: Option<DateTime>,
    /// Connected now: a live connection open on some node (with Redis, marks last up to a
    /// minute after the last connection closes).
    pub online: bool,
}

#[derive(SimpleObject)]
#[graphql(name = "Ban")]
pub struct BanObj {
    pub user: User,
    pub reason: String,
    pub by: User,
    pub at: DateTime,
}

#[derive(SimpleObject)]
#[graphql(name = "Invite")]
pub struct InviteObj {
    pub code: String,
    pub max_uses: Option<i32>,
    pub uses: i32,
    pub expires_at: Option<DateTime>,
    pub creator: User,
}

/// A channel as seen by one member.
pub struct ChannelObj {
    pub g: Arc<Guild>,
    pub id: ChannelId,
    pub viewer: UserId,
    /// The newest message's position, when the guild's channel list fetched them all at
    /// once (`None`: ask the timeline when the field is wanted).
    pub last_message: Option<Option<u64>>,
    /// The viewer's read state here, read once for the fields that show it.
    read: tokio::sync::OnceCell<queries::ReadState>,
}

impl ChannelObj {
    pub fn new(g: Arc<Guild>, id: ChannelId, viewer: UserId) -> Self {
        Self { g, id, viewer, last_message: None, read: tokio::sync::OnceCell::new() }
    }

    async fn is_archived(&self, ctx: &Context<'_>) -> Result<bool, ApiError> {
        let c = self
            .g
            .channels
            .get(&self.id)
            .ok_or_else(|| ApiError::not_found(format!("channel {} not found", self.id)))?;
        let parent = c.thread.and_then(|t| self.g.channels.get(&t.parent));
        if c.archived || self.g.archived || parent.is_some_and(|p| p.archived) {
            return Ok(true);
        }
        let Some(thread) = c.thread else { return Ok(false) };
        let last = self.thread_stats(ctx).await?.1.unwrap_or(0).max(thread.started_at.as_millis());
        Ok(last + super::threads::ARCHIVE_AFTER_MS < now().as_millis())
    }

    async fn thread_stats(&self, ctx: &Context<'_>) -> Result<(u64, Option<u64>), ApiError> {
        let api = api(ctx);
        api.read_your_writes(ctx, &["timeline"]).await?;
        Ok(queries::thread_stats(api.projections.db(), self.id).await?)
    }

    async fn read_state(&self, ctx: &Context<'_>) -> Result<&queries::ReadState, ApiError> {
        self.read
            .get_or_try_init(|| async {
                let api = api(ctx);
                api.read_your_writes(ctx, &["reads", "timeline"]).await?;
                let roles = viewer_roles(&self.g, &self.viewer);
                let found =
                    queries::read_states_with_roles(api.projections.db(), &self.viewer, &roles, &[self.id]).await?;
                Ok(found.into_iter().next().unwrap_or_default())
            })
            .await
    }
}

/// A permission overwrite on a channel: for a role or for one member.
#[derive(SimpleObject)]
pub struct Overwrite {
    pub role_id: Option<ID>,
    pub user_id: Option<ID>,
    pub allow: Vec<Permission>,
    pub deny: Vec<Permission>,
}

impl ChannelObj {
    fn channel(&self) -> Res<&openguild_domain::guild::Channel> {
        self.g
            .channels
            .get(&self.id)
            .ok_or_else(|| ApiError::not_found(format!("channel {} not found", self.id)).into())
    }
}

#[Object(name = "Channel")]
impl ChannelObj {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// The guild; `null` for a direct message, which belongs to none.
    async fn guild_id(&self) -> Option<ID> {
        self.g.id.filter(|_| !self.g.dm).map(|g| ID(g.to_string()))
    }
    /// A guild channel's name; a group DM's name if it was given one, else its people's
    /// handles.
    async fn name(&self) -> Res<String> {
        let name = &self.channel()?.name;
        if !self.g.dm {
            return Ok(name.clone());
        }
        if !self.g.name.is_empty() {
            return Ok(self.g.name.clone());
        }
        let others: Vec<&str> = self.g.members.keys().filter(|u| **u != self.viewer).map(|u| u.handle()).collect();
        Ok(others.join(", "))
    }
    /// For a direct message, the people in it other than the viewer; empty for a guild's
    /// channel.
    async fn recipients(&self) -> Vec<User> {
        if !self.g.dm {
            return Vec::new();
        }
        self.g.members.keys().filter(|u| **u != self.viewer).cloned().map(User).collect()
    }
    async fn kind(&self) -> Res<ChannelKind> {
        Ok(self.channel()?.kind.into())
    }
    async fn topic(&self) -> Res<&str> {
        Ok(&self.channel()?.topic)
    }
    async fn category_id(&self) -> Res<Option<ID>> {
        Ok(self.channel()?.category.map(|c| ID(c.to_string())))
    }
    async fn position(&self) -> Res<u32> {
        Ok(self.channel()?.position)
    }
    async fn slow_mode_seconds(&self) -> Res<u32> {
        Ok(self.channel()?.slow_mode_seconds)
    }
    async fn locked(&self) -> Res<bool> {
        Ok(self.channel()?.locked)
    }
    /// A voice channel's cap on people in it at once (0: none).
    async fn user_limit(&self) -> Res<u32> {
        Ok(self.channel()?.user_limit)
    }
    /// Who is in this voice channel's room now, by when they joined. `after`: a cursor of
    /// `guildEvents`; the answer includes everything up to it.
    async fn voice_participants(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Res<Vec<super::voice::VoiceParticipant>> {
        super::voice::participants(ctx, self.id, after).await
    }
    /// Read-only for good (its text is erased after the hub's retention); a thread quiet
    /// for three days shows as archived until its next message.
    async fn archived(&self, ctx: &Context<'_>) -> Res<bool> {
        Ok(self.is_archived(ctx).await?)
    }
    /// What the viewer may do here.
    async fn my_permissions(&self) -> Vec<Permission> {
        Permission::all_of(self.g.channel_permissions(&self.viewer, self.id, now()))
    }
    /// The channel's permission overwrites, for those who may change them (MANAGE_CHANNELS
    /// or MANAGE_ROLES here); empty for everyone else.
    async fn overwrites(&self) -> Res<Vec<Overwrite>> {
        use openguild_domain::permissions::OverwriteTarget;
        let perms = self.g.channel_permissions(&self.viewer, self.id, now());
        if !perms.intersects(Permissions::MANAGE_CHANNELS | Permissions::MANAGE_ROLES) {
            return Ok(Vec::new());
        }
        Ok(self
            .channel()?
            .overwrites
            .iter()
            .map(|(target, o)| {
                let (role_id, user_id) = match target {
                    OverwriteTarget::Role(r) => (Some(ID(r.to_string())), None),
                    OverwriteTarget::Member(u) => (None, Some(ID(u.to_string()))),
                };
                Overwrite { role_id, user_id, allow: Permission::all_of(o.allow), deny: Permission::all_of(o.deny) }
            })
            .collect())
    }
    /// The cursor of the newest message not deleted (`null` if none): newer than the last
    /// one the viewer read means unread.
    async fn last_message_cursor(&self, ctx: &Context<'_>) -> Res<Option<String>> {
        let position = match self.last_message {
            Some(known) => known,
            None => {
                let api = api(ctx);
                api.read_your_writes(ctx, &["timeline"]).await?;
                let found =
                    queries::last_message_positions(api.projections.db(), &[self.id]).await.map_err(ApiError::from)?;
                found.first().map(|(_, p)| *p)
            }
        };
        Ok(position.map(|p| p.to_string()))
    }
    /// The viewer's notification level here: the channel's own, else its guild's (`ALL` unless
    /// set).
    async fn notification_level(&self, ctx: &Context<'_>) -> Res<NotificationLevel> {
        let Some(guild) = self.g.id else { return Ok(NotificationLevel::All) };
        Ok(api(ctx).notify_level(&self.viewer, guild, Some(self.id)).await?.into())
    }
    /// Messages by others since the viewer's read marker (`markRead`), counted up to 1,000.
    async fn unread_count(&self, ctx: &Context<'_>) -> Res<i32> {
        Ok(self.read_state(ctx).await?.unread as i32)
    }
    /// Of the unread messages, those that mention the viewer or everyone (up to 1,000).
    async fn mention_count(&self, ctx: &Context<'_>) -> Res<i32> {
        Ok(self.read_state(ctx).await?.mentions as i32)
    }
    /// The last message the viewer marked read here, if any: the first unread is the next.
    async fn last_read_message_id(&self, ctx: &Context<'_>) -> Res<Option<ID>> {
        Ok(self.read_state(ctx).await?.last_read.map(|m| ID(m.to_string())))
    }
    /// The pinned messages, newest first (at most 50).
    /// A thread's channel (`null` for any other).
    async fn parent(&self) -> Res<Option<ChannelObj>> {
        Ok(self.channel()?.thread.map(|t| ChannelObj::new(self.g.clone(), t.parent, self.viewer.clone())))
    }
    /// A thread's first message: the one it was started from.
    async fn starter_message(&self, ctx: &Context<'_>) -> Res<Option<Message>> {
        let Some(t) = self.channel()?.thread else { return Ok(None) };
        let api = api(ctx);
        api.read_your_writes(ctx, &["timeline"]).await?;
        let rows = queries::messages_by_id(api.projections.db(), &[t.message]).await.map_err(ApiError::from)?;
        Ok(rows.into_iter().next().map(Message))
    }
    /// A thread's messages not deleted.
    async fn message_count(&self, ctx: &Context<'_>) -> Res<i32> {
        Ok(self.thread_stats(ctx).await?.0 as i32)
    }
    /// When the newest message was posted (a thread's start if none).
    async fn last_activity(&self, ctx: &Context<'_>) -> Res<Option<DateTime>> {
        let started = self.channel()?.thread.map(|t| t.started_at.as_millis());
        Ok(self.thread_stats(ctx).await?.1.max(started).map(DateTime))
    }
    /// Whether the viewer follows this thread.
    async fn following(&self, ctx: &Context<'_>) -> Res<bool> {
        let api = api(ctx);
        if self.viewer.server() != api.server {
            return Ok(false);
        }
        let cell = api.commands.account_cell(&self.viewer).await.map_err(ApiError::from)?;
        Ok(cell.lock().await.following.contains(&self.id))
    }
    /// The threads started from this channel's messages, newest first; `archived: false`
    /// leaves out those quiet for three days.
    async fn threads(&self, ctx: &Context<'_>, archived: Option<bool>) -> Res<Vec<ChannelObj>> {
        let mut out = Vec::new();
        for (id, c) in self.g.channels.iter().filter(|(_, c)| c.thread.is_some_and(|t| t.parent == self.id)) {
            let _ = c;
            let t = ChannelObj::new(self.g.clone(), *id, self.viewer.clone());
            if let Some(want) = archived
                && t.is_archived(ctx).await? != want
            {
                continue;
            }
            out.push(t);
        }
        out.reverse();
        Ok(out)
    }
    async fn pins(&self, ctx: &Context<'_>) -> Res<Vec<Message>> {
        let perms = self.g.channel_permissions(&self.viewer, self.id, now());
        if !perms.contains(Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY) {
            return Err(ApiError::forbidden("reading pins needs VIEW_CHANNEL and READ_MESSAGE_HISTORY").into());
        }
        let api = api(ctx);
        api.read_your_writes(ctx, &["timeline"]).await?;
        let mut rows = queries::pins(api.projections.db(), self.id).await.map_err(ApiError::from)?;
        queries::mark_mine(api.projections.db(), &self.viewer, &mut rows).await?;
        Ok(rows.into_iter().map(Message).collect())
    }
    /// Messages, oldest first within the page. `last`/`before` page back from the newest;
    /// `first`/`after` page forward. Cursors are positions.
    #[graphql(complexity = "page_cost(first, last, 50, child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Res<Connection<String, Message>> {
        let perms = self.g.channel_permissions(&self.viewer, self.id, now());
        if !perms.contains(Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY) {
            return Err(ApiError::forbidden(
                "reading this channel's history needs VIEW_CHANNEL and READ_MESSAGE_HISTORY",
            )
            .into());
        }
        let api = api(ctx);
        api.read_your_writes(ctx, &["timeline"]).await?;
        let cursor = |c: Option<String>| -> Result<Option<u64>, ApiError> {
            c.map(|c| c.parse::<u64>().map_err(|_| ApiError::invalid("cursor", "use a cursor from a previous page")))
                .transpose()
        };
        let (page, forward) = match (first, last) {
            (Some(_), Some(_)) => return Err(ApiError::invalid("paging", "give first or last, not both").into()),
            (Some(n), None) => {
                (Page::First { after: cursor(after)?, limit: page_size(Some(n), 50, 200)? as u32 + 1 }, true)
            }
            (None, n) => (Page::Last { before: cursor(before)?, limit: page_size(n, 50, 200)? as u32 + 1 }, false),
        };
        let want = match page {
            Page::First { limit, .. } | Page::Last { limit, .. } => limit as usize - 1,
        };
        let mut rows = queries::messages(&api.projections.db().clone(), self.id, page).await.map_err(ApiError::from)?;
        queries::mark_mine(api.projections.db(), &self.viewer, &mut rows).await?;
        let more = rows.len() > want;
        if more {
            if forward {
                rows.pop();
            } else {
                rows.remove(0);
            }
        }
        let (has_prev, has_next) = if forward { (false, more) } else { (more, false) };
        let mut conn = Connection::new(has_prev, has_next);
        // What people the viewer blocked wrote is hidden from them (the page keeps its
        // cursors, so paging goes on past it).
        let blocked = api.blocked_by(&self.viewer).await?;
        conn.edges.extend(
            rows.into_iter()
                .filter(|m| !blocked.contains(&m.author))
                .map(|m| Edge::new(m.position.to_string(), Message(m))),
        );
        Ok(conn)
    }
}

/// A message.
#[derive(Clone, Debug)]
pub struct Message(pub MessageRow);

#[Object]
impl Message {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn channel_id(&self) -> ID {
        ID(self.0.channel.to_string())
    }
    async fn author(&self) -> User {
        User(self.0.author.clone())
    }
    /// The text (a safe Markdown subset); `null` once deleted.
    async fn body(&self) -> Option<&str> {
        self.0.body.as_deref()
    }
    async fn reply_to_id(&self) -> Option<ID> {
        self.0.reply_to.map(|r| ID(r.to_string()))
    }
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    async fn edited_at(&self) -> Option<DateTime> {
        self.0.edited_at.map(DateTime)
    }
    async fn deleted(&self) -> bool {
        self.0.deleted
    }
    async fn pinned(&self) -> bool {
        self.0.pinned
    }
    /// Where it is in the event log: its cursor.
    async fn cursor(&self) -> String {
        self.0.position.to_string()
    }
    /// Not in this hub's log yet: posted in a guild another hub owns and on its way there
    /// or back. While the owner cannot be reached the post waits, in order, in this hub's
    /// queue, under a provisional id; it arrives as `MESSAGE_POSTED` under its own id.
    async fn pending(&self) -> bool {
        self.0.position == 0
    }
    /// The thread started from this message, if there is one the viewer can see.
    async fn thread(&self, ctx: &Context<'_>) -> Res<Option<ChannelObj>> {
        let Some(me) = ctx.data_opt::<crate::auth::Viewer>().map(|v| v.user.clone()) else { return Ok(None) };
        let api = api(ctx);
        let Ok(guild) = api.commands.guild_of(self.0.channel).await else { return Ok(None) };
        let cell = api.commands.guild_cell(guild).await.map_err(ApiError::from)?;
        let Some(thread) = cell.lock().await.thread_of(&self.0.id) else { return Ok(None) };
        Ok(api.channel_view(&me, thread).await.ok().map(|g| ChannelObj::new(g, thread, me)))
    }
    async fn attachments(&self) -> Vec<AttachmentObj> {
        self.0
            .attachments
            .iter()
            .map(|a| AttachmentObj {
                id: ID(a.id.to_string()),
                url: format!("/media/{}", a.id),
                preview_url: matches!(a.content_type.as_str(), "image/jpeg" | "image/png")
                    .then(|| format!("/media/{}/preview", a.id)),
                filename: a.filename.clone(),
                content_type: a.content_type.clone(),
                size: a.size as f64,
                width: a.width.map(|w| w as i32),
                height: a.height.map(|h| h as i32),
            })
            .collect()
    }
    async fn reactions(&self) -> Vec<Reaction> {
        self.0
            .reactions
            .iter()
            .map(|(emoji, count)| Reaction {
                emoji: emoji.clone(),
                count: *count as i32,
                me: self.0.mine.contains(emoji),
            })
            .collect()
    }
}

/// A file shown with a message. `url` is served to those who may read the message, with
/// the viewer's bearer token.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Attachment")]
pub struct AttachmentObj {
    pub id: ID,
    pub url: String,
    /// A small JPEG (at most 320 pixels a side) of a JPEG or PNG image; `null` otherwise.
    pub preview_url: Option<String>,
    pub filename: String,
    pub content_type: String,
    pub size: f64,
    pub width: Option<i32>,
    pub height: Option<i32>,
}

#[derive(SimpleObject, Clone)]
pub struct Reaction {
    pub emoji: String,
    pub count: i32,
    /// Whether the viewer is among those who reacted with it.
    pub me: bool,
}

/// One audit log entry: who did what to whom, where, why, when, before → after, and the
/// signed event it came from.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct AuditEntry {
    pub event_id: ID,
    pub kind: String,
    pub actor: ID,
    pub target: Option<ID>,
    pub channel_id: Option<ID>,
    pub reason: String,
    pub at: DateTime,
    pub before: Option<String>,
    pub after: Option<String>,
    pub cursor: String,
}

#[ComplexObject]
impl AuditEntry {
    /// A person-readable line, e.g. `@mod:hub timed out @ann:hub: spam`.
    async fn summary(&self) -> String {
        // Joining and leaving are acts on oneself: the target is the actor.
        let target = match &self.target {
            Some(t) if t.0 != self.actor.0 => format!(" {}", t.0),
            _ => String::new(),
        };
        let reason = if self.reason.is_empty() { String::new() } else { format!(": {}", self.reason) };
        format!("{} {}{target}{reason}", self.actor.0, audit_verb(&self.kind))
    }
}

/// Every kind the audit log records, in the order a filter lists them, with what it says
/// in words in a summary (`member.timed_out` → `@mod timed out @bob`). The one list of them
/// outside the domain: the web client's filter asks for it (`Query.auditKinds`).
pub(crate) const AUDIT_KINDS: &[(&str, &str)] = &[
    ("guild.created", "created the guild"),
    ("guild.updated", "updated the guild"),
    ("guild.archived", "archived the guild"),
    ("guild.deleted", "deleted the guild"),
    ("category.created", "created a category"),
    ("category.updated", "updated a category"),
    ("category.deleted", "deleted a category"),
    ("channel.created", "created a channel"),
    ("channel.updated", "updated a channel"),
    ("channel.moved", "moved a channel"),
    ("channel.deleted", "deleted a channel"),
    ("channel.slow_mode", "set slow mode on a channel"),
    ("channel.locked", "locked or unlocked a channel"),
    ("channel.archived", "archived a channel"),
    ("channel.user_limit", "set the user limit of a voice channel"),
    ("overwrite.set", "set channel permissions for"),
    ("role.created", "created"),
    ("role.updated", "updated"),
    ("role.deleted", "deleted"),
    ("role.reordered", "reordered the roles"),
    ("role.assigned", "gave a role to"),
    ("role.unassigned", "took a role from"),
    ("invite.created", "created an invite"),
    ("invite.revoked", "revoked an invite"),
    ("member.joined", "joined"),
    ("member.left", "left"),
    ("member.nickname", "set the nickname of"),
    ("member.kicked", "kicked"),
    ("member.banned", "banned"),
    ("member.unbanned", "unbanned"),
    ("member.timed_out", "timed out"),
    ("member.timeout_removed", "removed the timeout of"),
    ("message.redacted", "deleted message"),
    ("message.pinned", "pinned message"),
    ("message.unpinned", "unpinned message"),
    ("voice.server_muted", "server-muted or unmuted"),
    ("voice.disconnected", "disconnected from voice"),
    ("voice.moved", "moved to another voice channel"),
    ("report.filed", "filed"),
    ("report.assigned", "took"),
    ("report.resolved", "resolved"),
];

/// What an audit entry's kind says in words; a kind without words of its own is shown as it
/// is.
fn audit_verb(kind: &str) -> &str {
    AUDIT_KINDS.iter().find(|(k, _)| *k == kind).map_or(kind, |(_, verb)| verb)
}

impl From<queries::AuditRow> for AuditEntry {
    fn from(r: queries::AuditRow) -> Self {
        Self {
            event_id: ID(r.event_id),
            kind: r.kind,
            actor: ID(r.actor),
            target: r.target.map(ID),
            channel_id: r.channel.map(ID),
            reason: r.reason,
            at: DateTime(r.ts),
            before: r.before,
            after: r.after,
            cursor: r.position.to_string(),
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ReportStatus {
    Open,
    Assigned,
    Resolved,
}

/// What a moderator did about a report.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "openguild_domain::ReportAction")]
pub enum ReportAction {
    Dismissed,
    Warned,
    MessageDeleted,
    TimedOut,
    Kicked,
    Banned,
}

#[derive(SimpleObject)]
pub struct Report {
    pub id: ID,
    pub reporter: ID,
    pub target_user: ID,
    pub target_channel_id: Option<ID>,
    pub target_message_id: Option<ID>,
    pub reason: String,
    pub status: ReportStatus,
    pub action: Option<String>,
    pub resolved_by: Option<ID>,
    pub resolution: Option<String>,
    pub filed_at: DateTime,
    pub resolved_at: Option<DateTime>,
    /// The moderator who took it.
    pub assignee: Option<ID>,
    /// In the reports queue: the reported message as it is now (`body` is null once
    /// deleted). Not filled in the answer to `reportMessage`.
    pub message: Option<Message>,
}

impl From<queries::ReportRow> for Report {
    fn from(r: queries::ReportRow) -> Self {
        Self {
            id: ID(r.id),
            reporter: ID(r.reporter),
            target_user: ID(r.target_user),
            target_channel_id: r.target_channel.map(ID),
            target_message_id: r.target_message.map(ID),
            reason: r.reason,
            status: match r.status.as_str() {
                "open" => ReportStatus::Open,
                "assigned" => ReportStatus::Assigned,
                _ => ReportStatus::Resolved,
            },
            action: r.action,
            resolved_by: r.resolved_by.map(ID),
            resolution: r.resolution,
            filed_at: DateTime(r.filed_at),
            resolved_at: r.resolved_at.map(DateTime),
            assignee: r.assignee.map(ID),
            message: None,
        }
    }
}

/// Why one permission is allowed or denied, and what decided it.
#[derive(SimpleObject)]
pub struct PermissionVerdict {
    pub permission: Permission,
    pub allowed: bool,
    /// What decided it, in words: `owner`, `role Moderators`, `overwrite on channel for role …`.
    pub decided_by: String,
}

pub fn verdicts(g: &Guild, user: &UserId, channel: Option<ChannelId>) -> Option<Vec<PermissionVerdict>> {
    let role_name = |r: &RoleId| g.roles.get(r).map_or_else(|| r.to_string(), |role| role.name.clone());
    let list = g.explain(user, channel, now())?;
    Some(
        list.into_iter()
            .filter_map(|v| {
                let permission = Permission::all_of(v.permission).into_iter().next()?;
                let decided_by = match &v.reason {
                    Reason::Owner => "guild owner".to_owned(),
                    Reason::Administrator { role } => format!("ADMINISTRATOR from role {}", role_name(role)),
                    Reason::Role { role } => format!("role {}", role_name(role)),
                    Reason::NotGranted => "no role grants it".to_owned(),
                    Reason::Overwrite { scope, target, allowed } => {
                        let place = match scope {
                            Scope::Category => "category",
                            Scope::Channel => "channel",
                        };
                        let who = match target {
                            openguild_domain::permissions::OverwriteTarget::Role(r) => format!("role {}", role_name(r)),
                            openguild_domain::permissions::OverwriteTarget::Member(u) => format!("member {u}"),
                        };
                        format!("{} by the {place} overwrite for {who}", if *allowed { "allowed" } else { "denied" })
                    }
                    Reason::TimedOut { until } => format!("timed out until {}", DateTime(until.as_millis()).to_value()),
                    Reason::NoViewChannel => "cannot see the channel".to_owned(),
                    Reason::NoSendMessages => "cannot send messages in the channel".to_owned(),
                };
                Some(PermissionVerdict { permission, allowed: v.allowed, decided_by })
            })
            .collect(),
    )
}

/// The viewer, for resolvers that need one.
pub fn me(ctx: &Context<'_>) -> Res<UserId> {
    Ok(viewer(ctx)?.user.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_audit_kind_is_listed_once_with_words() {
        let mut seen = std::collections::BTreeSet::new();
        for (kind, verb) in AUDIT_KINDS {
            assert!(seen.insert(kind), "{kind} is listed twice");
            assert!(kind.contains('.') && !verb.is_empty() && !verb.contains('.'), "{kind}: {verb:?}");
        }
        assert_eq!(audit_verb("member.timed_out"), "timed out");
        assert_eq!(audit_verb("something.new"), "something.new", "an unknown kind is shown as it is");
    }
}
