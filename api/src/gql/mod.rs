//! The GraphQL schema: queries over the read models and aggregates, one mutation per
//! command, and subscriptions delivered by [`crate::ws`].

mod dm;
mod door;
mod hub;
pub mod ids;
pub mod live;
mod mutation;
mod threads;
mod types;
mod voice;

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, InputObject, Object, Schema, SimpleObject};
use openguild_domain::{ChannelId, GuildId, MessageId, Permissions, Timestamp, UserId};
use openguild_projections::queries;
use openguild_projections::replay::{self, Until};

use crate::Api;
use crate::auth::Viewer;
use crate::errors::{ApiError, Res};

pub use crate::clock::now;
pub use hub::LevelRole;
pub use ids::Id;
pub use live::{Live, SubMode, Subscription, Topic};
pub use mutation::Mutation;
pub use types::*;

pub type AppSchema = Schema<RootQuery, RootMutation, Subscription>;

/// The query root: the client API and the hub's.
#[derive(async_graphql::MergedObject, Default)]
pub struct RootQuery(Query, dm::DmQuery, hub::HubQuery, hub::ProvisionQuery, hub::OperatorQuery, hub::BotQuery);

/// The mutation root: one mutation per command, and the hub's.
#[derive(async_graphql::MergedObject, Default)]
pub struct RootMutation(
    Mutation,
    dm::DmMutation,
    threads::ThreadMutation,
    voice::VoiceMutation,
    hub::HubMutation,
    hub::BotMutation,
    hub::ProvisionMutation,
    hub::SyncMutation,
    hub::OperatorMutation,
);

/// The schema with the configured limits. Request data: `Arc<Api>`, and `Viewer` when the
/// request is authenticated.
pub fn schema(limits: &crate::limits::ApiLimits) -> AppSchema {
    builder()
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_recursive_depth(64)
        .extension(crate::trace::Spans)
        .extension(door::Door)
        .finish()
}

/// The schema's builder. Arguments typed [`Id<T>`] are `ID`s in the schema: the clash of
/// their name with the built-in `ID` is the point, so it is allowed for `ID` alone.
fn builder() -> async_graphql::SchemaBuilder<RootQuery, RootMutation, Subscription> {
    Schema::build_with_ignore_name_conflicts(RootQuery::default(), RootMutation::default(), Subscription, ["ID"])
}

/// The schema as SDL, as exported to `docs/schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

pub(crate) fn api<'a>(ctx: &Context<'a>) -> &'a Arc<Api> {
    ctx.data_unchecked::<Arc<Api>>()
}

impl Api {
    /// Runs a command on the viewer's own account stream (blocks, read markers, follows,
    /// notification levels); their next read waits for it.
    pub(crate) async fn own_account(
        &self,
        ctx: &Context<'_>,
        cmd: openguild_domain::account::AccountCommand,
    ) -> Result<(), ApiError> {
        let me = viewer(ctx)?.user.clone();
        self.account_as(&me, cmd).await
    }

    /// Runs a command on `me`'s own account (this hub's accounts only).
    pub async fn account_as(
        &self,
        me: &openguild_domain::UserId,
        cmd: openguild_domain::account::AccountCommand,
    ) -> Result<(), ApiError> {
        if me.server() != self.server {
            return Err(ApiError::forbidden("only this hub's own accounts have settings here"));
        }
        let done = self.commands.account(me, &cmd, now()).await?;
        self.wrote(me, done.position);
        Ok(())
    }

    /// `me` has read `channel` up to `message`.
    pub async fn mark_read(
        &self,
        me: &openguild_domain::UserId,
        channel: ChannelId,
        message: MessageId,
    ) -> Result<(), ApiError> {
        self.channel_view(me, channel).await?;
        if self.channel_of_message(&message).await? != channel {
            return Err(ApiError::invalid("messageId", format!("{message} is not a message of channel {channel}")));
        }
        self.account_as(me, openguild_domain::account::AccountCommand::MarkRead { channel, message }).await
    }

    /// `me` is typing in `channel` (not an event: a live notice, shared with the guild's owner
    /// hub when it is another).
    pub async fn typing_in(
        self: &std::sync::Arc<Self>,
        me: &openguild_domain::UserId,
        channel: ChannelId,
    ) -> Result<(), ApiError> {
        let g = self.channel_view(me, channel).await?;
        if !g.channel_permissions(me, channel, now()).contains(openguild_domain::Permissions::SEND_MESSAGES) {
            return Err(ApiError::forbidden("you cannot send messages in this channel"));
        }
        crate::remote::share_typing(self, &g, channel, me);
        self.fanout.typing(channel, me.clone()).await;
        Ok(())
    }
}

pub(crate) fn viewer<'a>(ctx: &Context<'a>) -> Result<&'a Viewer, ApiError> {
    ctx.data_opt::<Viewer>().ok_or_else(ApiError::login_required)
}

pub(crate) fn parse_id<T: std::str::FromStr>(field: &str, id: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    id.parse().map_err(|e| ApiError::invalid(field, e))
}

#[derive(Default)]
pub struct Query;

#[derive(InputObject, Default)]
pub struct AuditFilter {
    pub actor: Option<ID>,
    pub target: Option<ID>,
    /// Event kinds, e.g. `member.banned`, `member.timed_out`.
    pub kinds: Option<Vec<String>>,
    pub since: Option<DateTime>,
    pub until: Option<DateTime>,
}

/// A moment in a guild's history: a global position, or a time (the first given wins).
#[derive(InputObject)]
pub struct AtInput {
    pub position: Option<u64>,
    pub time: Option<DateTime>,
}

#[derive(SimpleObject)]
pub struct GuildSnapshot {
    pub id: ID,
    pub name: String,
    pub owner: Option<ID>,
    pub archived: bool,
    /// The last event replayed: its global position.
    pub position: u64,
    pub channels: Vec<SnapshotChannel>,
    pub roles: Vec<SnapshotRole>,
    pub members: Vec<SnapshotMember>,
    pub bans: Vec<SnapshotBan>,
    pub timeouts: Vec<SnapshotTimeout>,
    /// Moderation acts up to that moment, oldest first.
    pub history: Vec<SnapshotHistory>,
}

#[derive(SimpleObject)]
pub struct SnapshotChannel {
    pub id: ID,
    pub name: String,
    pub kind: String,
    pub slow_mode_seconds: u32,
    pub locked: bool,
}

#[derive(SimpleObject)]
pub struct SnapshotRole {
    pub id: ID,
    pub name: String,
    pub position: u32,
    pub permissions: Vec<String>,
}

#[derive(SimpleObject)]
pub struct SnapshotMember {
    pub user_id: ID,
    pub roles: Vec<ID>,
}

#[derive(SimpleObject)]
pub struct SnapshotBan {
    pub user_id: ID,
    pub reason: String,
}

#[derive(SimpleObject)]
pub struct SnapshotTimeout {
    pub user_id: ID,
    pub until: DateTime,
}

#[derive(SimpleObject)]
pub struct SnapshotHistory {
    pub event_id: ID,
    pub position: u64,
    pub at: DateTime,
    pub actor: ID,
    pub kind: String,
    pub target: Option<ID>,
    pub reason: String,
}

#[Object]
impl Query {
    /// The logged-in user.
    async fn me(&self, ctx: &Context<'_>) -> Res<User> {
        Ok(User(viewer(ctx)?.user.clone()))
    }

    /// The newest position this node has delivered live. Subscribe with `since: liveCursor`
    /// first, then load history: every event is in one or the other (some in both; they
    /// carry ids). History read through another node should pass it as
    /// `OpenGuild-Read-After`.
    async fn live_cursor(&self, ctx: &Context<'_>) -> Res<String> {
        viewer(ctx)?;
        Ok(api(ctx).fanout.position().to_string())
    }

    /// Every kind of event the audit log records (`member.timed_out`, …), for filters.
    async fn audit_kinds(&self) -> Vec<&'static str> {
        types::AUDIT_KINDS.iter().map(|(kind, _)| *kind).collect()
    }

    /// The guilds the viewer is a member of.
    async fn guilds(&self, ctx: &Context<'_>) -> Res<Vec<GuildObj>> {
        let me = me(ctx)?;
        let api = api(ctx);
        api.read_your_writes(ctx, &["directory"]).await?;
        let ids = queries::guilds_of(api.projections.db(), &me).await.map_err(ApiError::from)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            // The directory may be a moment behind a leave or a kick: the aggregate decides.
            // DMs are listed by `dms`.
            if let Ok(g) = api.member_view(&me, id).await
                && !g.dm
            {
                out.push(GuildObj { g, viewer: me.clone() });
            }
        }
        Ok(out)
    }

    /// A guild the viewer is a member of.
    async fn guild(&self, ctx: &Context<'_>, id: Id<GuildId>) -> Res<GuildObj> {
        let me = me(ctx)?;
        let g = api(ctx).member_view(&me, id.0).await?;
        if g.dm {
            return Err(ApiError::not_found(format!(
                "{} is a direct message, not a guild; ask for channel(id:)",
                id.0
            ))
            .into());
        }
        Ok(GuildObj { g, viewer: me })
    }

    /// A channel the viewer can see.
    async fn channel(&self, ctx: &Context<'_>, id: Id<ChannelId>) -> Res<ChannelObj> {
        let me = me(ctx)?;
        let id: ChannelId = id.0;
        let g = api(ctx).channel_view(&me, id).await?;
        Ok(ChannelObj::new(g, id, me))
    }

    /// The guild's audit log, newest first (needs VIEW_AUDIT_LOG).
    #[graphql(complexity = "page_cost(first, None, 50, child_complexity)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AuditFilter>,
    ) -> Res<Connection<String, AuditEntry>> {
        let me = me(ctx)?;
        let api = api(ctx);
        let guild: GuildId = guild_id.0;
        api.require(&me, guild, Permissions::VIEW_AUDIT_LOG, "reading the audit log").await?;
        api.read_your_writes(ctx, &["audit_log"]).await?;
        let first = page_size(first, 50, 200)?;
        let before = after
            .map(|a| a.parse::<u64>().map_err(|_| ApiError::invalid("after", "use a cursor from a previous page")))
            .transpose()?;
        let filter = filter.unwrap_or_default();
        let filter = queries::AuditFilter {
            actor: filter.actor.map(|a| a.0),
            target: filter.target.map(|t| t.0),
            kinds: filter.kinds.unwrap_or_default(),
            since_ms: filter.since.map(|t| t.0),
            until_ms: filter.until.map(|t| t.0),
        };
        let mut rows = queries::audit_page(api.projections.db(), guild, &filter, before, first as u32 + 1)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() > first;
        rows.truncate(first);
        let mut conn = Connection::new(before.is_some(), more);
        conn.edges.extend(rows.into_iter().map(|r| Edge::new(r.position.to_string(), AuditEntry::from(r))));
        Ok(conn)
    }

    /// The guild's reports (needs MODERATE_MEMBERS), oldest first.
    async fn reports(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        status: Option<ReportStatus>,
    ) -> Res<Vec<Report>> {
        let me = me(ctx)?;
        let api = api(ctx);
        let guild: GuildId = guild_id.0;
        api.require(&me, guild, Permissions::MODERATE_MEMBERS, "seeing reports").await?;
        api.read_your_writes(ctx, &["reports", "timeline"]).await?;
        let status = status.map(|s| match s {
            ReportStatus::Open => "open",
            ReportStatus::Assigned => "assigned",
            ReportStatus::Resolved => "resolved",
        });
        let rows = queries::reports(api.projections.db(), guild, status).await.map_err(ApiError::from)?;
        // The reported messages, in one read, so a moderator sees what was reported.
        let targets: Vec<Option<MessageId>> =
            rows.iter().map(|r| r.target_message.as_deref().and_then(|m| m.parse().ok())).collect();
        let ids: Vec<MessageId> = targets.iter().flatten().copied().collect();
        let messages: HashMap<MessageId, queries::MessageRow> = queries::messages_by_id(api.projections.db(), &ids)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        Ok(rows
            .into_iter()
            .zip(targets)
            .map(|(r, target)| {
                let message = target.and_then(|m| messages.get(&m).cloned()).map(types::Message);
                Report { message, ..Report::from(r) }
            })
            .collect())
    }

    /// Messages of a guild containing every word of `query`, newest first; only messages of
    /// channels whose history the viewer can read.
    #[graphql(complexity = "page_cost(first, None, 20, child_complexity)")]
    async fn search(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        query: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> Res<Connection<String, Message>> {
        let me = me(ctx)?;
        let api = api(ctx);
        let guild: GuildId = guild_id.0;
        let g = api.member_view(&me, guild).await?;
        api.read_your_writes(ctx, &["search", "timeline"]).await?;
        let first = page_size(first, 20, 100)?;
        let before = after
            .map(|a| a.parse::<u64>().map_err(|_| ApiError::invalid("after", "use a cursor from a previous page")))
            .transpose()?;
        let now = now();
        let readable = |c: ChannelId| {
            g.channel_permissions(&me, c, now).contains(Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY)
        };
        let mut found = Vec::new();
        let mut cursor = before;
        // Pages until `first` readable hits (or the index is exhausted).
        loop {
            let page =
                queries::search(api.projections.db(), guild, &query, cursor, 100).await.map_err(ApiError::from)?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.1);
            let ids: Vec<_> = page.iter().map(|(id, _)| *id).collect();
            let rows = queries::messages_by_id(api.projections.db(), &ids).await.map_err(ApiError::from)?;
            found.extend(rows.into_iter().filter(|m| readable(m.channel)));
            if found.len() > first || page.len() < 100 {
                break;
            }
        }
        let more = found.len() > first;
        found.truncate(first);
        let mut conn = Connection::new(before.is_some(), more);
        conn.edges.extend(found.into_iter().map(|m| Edge::new(m.position.to_string(), Message(m))));
        Ok(conn)
    }

    /// The guild as it was at a position or time, computed from the events (needs
    /// VIEW_AUDIT_LOG): channels, roles, members, bans, timeouts and moderation history.
    async fn guild_at(&self, ctx: &Context<'_>, id: Id<GuildId>, at: AtInput) -> Res<GuildSnapshot> {
        let me = me(ctx)?;
        let api = api(ctx);
        let guild: GuildId = id.0;
        api.require(&me, guild, Permissions::VIEW_AUDIT_LOG, "replaying the guild's history").await?;
        let until = match (at.position, at.time) {
            (Some(p), _) => Until::Position(p),
            (None, Some(t)) => Until::Time(Timestamp::from_millis(t.0).map_err(|e| ApiError::invalid("at.time", e))?),
            (None, None) => return Err(ApiError::invalid("at", "give a position or a time").into()),
        };
        let Some(s) = replay::replay(&*api.store, guild, until).await.map_err(ApiError::from)? else {
            return Err(ApiError::not_found("the guild did not exist yet at that moment").into());
        };
        Ok(GuildSnapshot {
            id: ID(s.guild),
            name: s.name,
            owner: s.owner.map(ID),
            archived: s.archived,
            position: s.position,
            channels: s
                .channels
                .into_iter()
                .map(|(id, c)| SnapshotChannel {
                    id: ID(id),
                    name: c.name,
                    kind: c.kind,
                    slow_mode_seconds: c.slow_mode_seconds,
                    locked: c.locked,
                })
                .collect(),
            roles: s
                .roles
                .into_iter()
                .map(|r| SnapshotRole {
                    id: ID(r.id),
                    name: r.name,
                    position: r.position,
                    permissions: r.permissions.into_iter().map(str::to_owned).collect(),
                })
                .collect(),
            members: s
                .members
                .into_iter()
                .map(|(u, roles)| SnapshotMember { user_id: ID(u), roles: roles.into_iter().map(ID).collect() })
                .collect(),
            bans: s.bans.into_iter().map(|(u, reason)| SnapshotBan { user_id: ID(u), reason }).collect(),
            timeouts: s
                .timeouts
                .into_iter()
                .map(|(u, until)| SnapshotTimeout { user_id: ID(u), until: DateTime(until) })
                .collect(),
            history: s
                .history
                .into_iter()
                .map(|h| SnapshotHistory {
                    event_id: ID(h.event_id),
                    position: h.position,
                    at: DateTime(h.ts),
                    actor: ID(h.actor),
                    kind: h.kind.to_owned(),
                    target: h.target.map(ID),
                    reason: h.reason,
                })
                .collect(),
        })
    }

    /// Each permission of `userId` in a channel, with the role or overwrite that granted or
    /// denied it. Moderators (MODERATE_MEMBERS or MANAGE_ROLES) and the user themself may ask.
    async fn explain_permissions(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        user_id: Id<UserId>,
    ) -> Res<Vec<PermissionVerdict>> {
        let me = me(ctx)?;
        let api = api(ctx);
        let channel: ChannelId = channel_id.0;
        let user: UserId = user_id.0;
        let g = api.channel_view(&me, channel).await?;
        let mine = g.guild_permissions(&me, now());
        if user != me && !mine.intersects(Permissions::MODERATE_MEMBERS | Permissions::MANAGE_ROLES) {
            return Err(ApiError::forbidden(
                "explaining another member's permissions needs MODERATE_MEMBERS or MANAGE_ROLES",
            )
            .into());
        }
        verdicts(&g, &user, Some(channel))
            .ok_or_else(|| ApiError::not_found(format!("{user} is not a member of this guild")).into())
    }
}
