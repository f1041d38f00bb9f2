//! One mutation per command. Each one authenticates, takes a token from the user's
//! mutation bucket, lets the domain decide, and records the position written so the same
//! user's next read waits for it.

use async_graphql::{Context, ID, InputObject, Object};
use openguild_domain::channel::MessageCommand;
use openguild_domain::guild::GuildCommand;
use openguild_domain::hub::policy;
use openguild_domain::{
    CategoryId, ChannelId, DomainError, EventBody, GuildId, InviteCode, MessageId, Place, Refusal, ReportId, RoleId,
    ServerName, StreamId, UserId,
};

use super::{
    Category, ChannelKind, ChannelObj, GuildObj, Id, InviteObj, Message, Permission, Report, ReportAction,
    ReportStatus, RoleObj, Session, User, api, now, parse_id, permissions_of, viewer,
};
use crate::Api;
use crate::commands::{CommandError, Executed, random16};
use crate::errors::{ApiError, Res};

#[derive(Default)]
pub struct Mutation;

#[derive(InputObject)]
pub struct CreateGuildInput {
    pub name: String,
}

#[derive(InputObject)]
pub struct CreateChannelInput {
    pub guild_id: Id<GuildId>,
    pub name: String,
    pub kind: ChannelKind,
    pub category_id: Option<Id<CategoryId>>,
    #[graphql(default)]
    pub topic: String,
}

#[derive(InputObject)]
pub struct CreateCategoryInput {
    pub guild_id: Id<GuildId>,
    pub name: String,
}

#[derive(InputObject)]
pub struct CreateInviteInput {
    pub guild_id: Id<GuildId>,
    /// How many times it may be used, 1 to 1,000,000 (unlimited if absent).
    #[graphql(validator(minimum = 1, maximum = 1_000_000))]
    pub max_uses: Option<u32>,
    /// Seconds until it expires, up to a year (never if absent).
    #[graphql(validator(minimum = 1, maximum = 31_536_000))]
    pub expires_in_seconds: Option<u32>,
}

#[derive(InputObject)]
pub struct SendMessageInput {
    pub channel_id: Id<ChannelId>,
    /// The text; may be empty when files are attached.
    #[graphql(default)]
    pub body: String,
    pub reply_to: Option<Id<MessageId>>,
    /// Uploads of the viewer's (`POST /media/upload`) to show with it, up to 10.
    #[graphql(default)]
    pub attachments: Vec<Id<openguild_domain::MediaId>>,
}

#[derive(InputObject)]
pub struct CreateRoleInput {
    pub guild_id: Id<GuildId>,
    pub name: String,
    pub permissions: Vec<Permission>,
}

#[derive(InputObject)]
pub struct UpdateRoleInput {
    pub guild_id: Id<GuildId>,
    pub role_id: Id<RoleId>,
    pub name: Option<String>,
    pub permissions: Option<Vec<Permission>>,
}

impl Api {
    /// The viewer of a mutation (its rate limit was taken at the door, `gql::door`).
    async fn actor(&self, ctx: &Context<'_>) -> Result<UserId, ApiError> {
        Ok(viewer(ctx)?.user.clone())
    }

    /// A guild command: run here, or, in a guild another hub owns, decided against this
    /// hub's copy and proposed to the owner (`remote`).
    pub(super) async fn guild_cmd(
        &self,
        ctx: &Context<'_>,
        guild: GuildId,
        cmd: GuildCommand,
    ) -> Result<Executed, ApiError> {
        let me = self.actor(ctx).await?;
        self.guild_as(&me, guild, cmd).await
    }

    /// A guild created by `viewer`, if the hub lets them create one.
    pub async fn create_guild_as(&self, viewer: &crate::auth::Viewer, name: &str) -> Result<GuildId, ApiError> {
        let actor = match viewer.bot_of {
            Some(guild) => openguild_domain::hub::HubActor::Bot { user: viewer.user.clone(), guild },
            None => openguild_domain::hub::HubActor::User(viewer.user.clone()),
        };
        let rule = self.settings.guild_creation;
        self.hub_allows(|hub| policy::may_create_guild(hub, &actor, rule)).await?;
        let (id, done) = self.commands.create_guild(&viewer.user, name, now()).await.map_err(ApiError::from)?;
        self.wrote(&viewer.user, done.position);
        Ok(id)
    }

    /// A guild command by `me`: run here, or proposed to the guild's owner hub.
    pub async fn guild_as(&self, me: &UserId, guild: GuildId, cmd: GuildCommand) -> Result<Executed, ApiError> {
        let done = match self.commands.guild(me, guild, &cmd, now()).await {
            Err(CommandError::Domain(DomainError::Forbidden(Refusal::OwnedElsewhere(owner)))) => {
                self.guild_cmd_elsewhere(&owner, me, guild, &cmd).await?
            }
            done => done?,
        };
        self.wrote(me, done.position);
        Ok(done)
    }

    /// A guild command about one channel: run in the channel's guild.
    async fn channel_cmd(
        &self,
        ctx: &Context<'_>,
        channel: ChannelId,
        cmd: GuildCommand,
    ) -> Result<Executed, ApiError> {
        let guild = self.commands.guild_of(channel).await?;
        self.guild_cmd(ctx, guild, cmd).await
    }

    /// A channel command, answered with the channel as the viewer now sees it.
    async fn changed_channel(&self, ctx: &Context<'_>, channel: ChannelId, cmd: GuildCommand) -> Res<ChannelObj> {
        self.channel_cmd(ctx, channel, cmd).await?;
        Ok(self.channel_obj(&viewer(ctx)?.user, channel).await?)
    }

    async fn message_cmd(
        &self,
        ctx: &Context<'_>,
        channel: ChannelId,
        cmd: MessageCommand,
    ) -> Result<Executed, ApiError> {
        let me = self.actor(ctx).await?;
        self.message_as(&me, channel, cmd).await
    }

    /// A message command by `me`: run here, or proposed to the guild's owner hub.
    pub async fn message_as(&self, me: &UserId, channel: ChannelId, cmd: MessageCommand) -> Result<Executed, ApiError> {
        let done = match self.commands.message(me, channel, &cmd, now()).await {
            Err(CommandError::Domain(DomainError::Forbidden(Refusal::OwnedElsewhere(owner)))) => {
                self.message_cmd_elsewhere(&owner, me, channel, &cmd).await?
            }
            done => done?,
        };
        self.wrote(me, done.position);
        Ok(done)
    }

    /// The channel a message was posted in (a message id is its event's id).
    pub(super) async fn channel_of_message(&self, message: &MessageId) -> Result<ChannelId, ApiError> {
        match self.store.get(message).await? {
            Some(e) => match (&e.event.core.stream, e.event.content()) {
                (StreamId::Channel(c), EventBody::MessagePosted { .. }) => Ok(*c),
                _ => Err(ApiError::not_found(format!("{message} is not a message"))),
            },
            None => Err(ApiError::not_found(format!("message {message} not found"))),
        }
    }

    async fn guild_obj(&self, me: &UserId, guild: GuildId) -> Result<GuildObj, ApiError> {
        Ok(GuildObj { g: self.member_view(me, guild).await?, viewer: me.clone() })
    }

    async fn category_obj(&self, me: &UserId, guild: GuildId, category: CategoryId) -> Result<Category, ApiError> {
        let g = self.member_view(me, guild).await?;
        let c = g.categories.get(&category).ok_or_else(|| ApiError::not_found("the category is gone"))?;
        Ok(Category { id: ID(category.to_string()), name: c.name.clone(), position: c.position })
    }

    pub(super) async fn channel_obj(&self, me: &UserId, channel: ChannelId) -> Result<ChannelObj, ApiError> {
        Ok(ChannelObj::new(self.channel_view(me, channel).await?, channel, me.clone()))
    }
}

/// A fresh invite code: 10 letters and digits.
fn invite_code() -> InviteCode {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let bytes = random16();
    let code: String = bytes.iter().take(10).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    #[allow(clippy::expect_used)]
    code.parse().expect("ten ASCII letters and digits are always a valid invite code")
}

#[Object]
impl Mutation {
    /// Creates a local account and logs it in.
    async fn register(&self, ctx: &Context<'_>, handle: String, password: String) -> Res<Session> {
        let from = ctx.data_opt::<crate::http::ClientAddr>().map(|a| a.0);
        let (token, user) = api(ctx).register(&handle, &password, from, now()).await?;
        Ok(Session { token, user: User(user) })
    }

    /// Logs in with a local account. Failed logins are rate-limited per account and address.
    async fn login(&self, ctx: &Context<'_>, handle: String, password: String) -> Res<Session> {
        let from = ctx.data_opt::<crate::http::ClientAddr>().map(|a| a.0);
        let (token, user) = api(ctx).login(&handle, &password, from, now()).await?;
        Ok(Session { token, user: User(user) })
    }

    /// Exchanges the current session for a fresh one (new token, new expiry); the old
    /// token stops working.
    async fn refresh_session(&self, ctx: &Context<'_>) -> Res<Session> {
        let api = api(ctx);
        let me = viewer(ctx)?.clone();
        let token = api.issue_session(&me.user, now()).await?;
        api.logout(&me, now()).await?;
        Ok(Session { token, user: User(me.user) })
    }

    /// Ends the current session; its token stops working at once.
    async fn logout(&self, ctx: &Context<'_>) -> Res<bool> {
        api(ctx).logout(viewer(ctx)?, now()).await?;
        Ok(true)
    }

    async fn create_guild(&self, ctx: &Context<'_>, input: CreateGuildInput) -> Res<GuildObj> {
        let api = api(ctx);
        let viewer = viewer(ctx)?;
        let id = api.create_guild_as(viewer, &input.name).await?;
        Ok(api.guild_obj(&viewer.user, id).await?)
    }

    async fn create_channel(&self, ctx: &Context<'_>, input: CreateChannelInput) -> Res<ChannelObj> {
        let api = api(ctx);
        let guild = input.guild_id.0;
        let channel = ChannelId::from_bytes(random16());
        let category = input.category_id.map(|c| c.0);
        let cmd = GuildCommand::CreateChannel {
            channel,
            name: input.name,
            kind: input.kind.into(),
            category,
            topic: input.topic,
            overwrites: vec![],
        };
        api.guild_cmd(ctx, guild, cmd).await?;
        Ok(api.channel_obj(&viewer(ctx)?.user, channel).await?)
    }

    async fn create_category(&self, ctx: &Context<'_>, input: CreateCategoryInput) -> Res<Category> {
        let api = api(ctx);
        let guild = input.guild_id.0;
        let category = CategoryId::from_bytes(random16());
        api.guild_cmd(ctx, guild, GuildCommand::CreateCategory { category, name: input.name }).await?;
        Ok(api.category_obj(&viewer(ctx)?.user, guild, category).await?)
    }

    async fn update_category(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        category_id: Id<CategoryId>,
        name: Option<String>,
        #[graphql(validator(maximum = 10_000))] position: Option<u32>,
    ) -> Res<Category> {
        let api = api(ctx);
        let guild = guild_id.0;
        let category = category_id.0;
        api.guild_cmd(ctx, guild, GuildCommand::UpdateCategory { category, name, position }).await?;
        Ok(api.category_obj(&viewer(ctx)?.user, guild, category).await?)
    }

    /// Deletes a category; its channels stay, uncategorised.
    async fn delete_category(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        category_id: Id<CategoryId>,
    ) -> Res<bool> {
        let cmd = GuildCommand::DeleteCategory { category: category_id.0 };
        api(ctx).guild_cmd(ctx, guild_id.0, cmd).await?;
        Ok(true)
    }

    async fn create_invite(&self, ctx: &Context<'_>, input: CreateInviteInput) -> Res<InviteObj> {
        let api = api(ctx);
        let guild = input.guild_id.0;
        let code = invite_code();
        let expires_at = input.expires_in_seconds.map(|s| now().plus_millis(u64::from(s) * 1000));
        let cmd = GuildCommand::CreateInvite { code: code.clone(), max_uses: input.max_uses, expires_at };
        api.guild_cmd(ctx, guild, cmd).await?;
        Ok(InviteObj {
            code: code.to_string(),
            max_uses: input.max_uses.map(|u| u as i32),
            uses: 0,
            expires_at: expires_at.map(Into::into),
            creator: User(viewer(ctx)?.user.clone()),
        })
    }

    /// Revokes an invite: its creator may, and anyone with MANAGE_GUILD.
    async fn revoke_invite(&self, ctx: &Context<'_>, guild_id: Id<GuildId>, code: String) -> Res<bool> {
        let cmd = GuildCommand::RevokeInvite { code: parse_id("code", &code)? };
        api(ctx).guild_cmd(ctx, guild_id.0, cmd).await?;
        Ok(true)
    }

    /// Joins the guild an invite code belongs to: a code of this hub, or `CODE@hub` for a
    /// guild another hub owns (joined through this hub, and then readable here).
    async fn join_guild(&self, ctx: &Context<'_>, code: String) -> Res<GuildObj> {
        let api = api(ctx);
        let (code, hub) = match code.rsplit_once('@') {
            Some((code, hub)) => (code, Some(parse_id::<ServerName>("hub of the invite", hub)?)),
            None => (code.as_str(), None),
        };
        let invite: InviteCode = parse_id("invite code", code)?;
        if viewer(ctx)?.bot_of.is_some() {
            return Err(
                ApiError::forbidden("a bot acts only in the guild it was made for; it cannot join others").into()
            );
        }
        if let Some(owner) = hub.filter(|h| h != api.commands.key().server()) {
            let me = viewer(ctx)?.user.clone();
            let guild = api.join_remote(&owner, &invite, &me).await?;
            return Ok(api.guild_obj(&me, guild).await?);
        }
        let guild = api.guild_of_invite(&invite).await?;
        api.guild_cmd(ctx, guild, GuildCommand::Join { invite }).await?;
        Ok(api.guild_obj(&viewer(ctx)?.user, guild).await?)
    }

    async fn leave_guild(&self, ctx: &Context<'_>, guild_id: Id<GuildId>) -> Res<bool> {
        api(ctx).guild_cmd(ctx, guild_id.0, GuildCommand::Leave).await?;
        Ok(true)
    }

    async fn send_message(&self, ctx: &Context<'_>, input: SendMessageInput) -> Res<Message> {
        let api = api(ctx);
        let me = api.actor(ctx).await?;
        let ids: Vec<openguild_domain::MediaId> = input.attachments.iter().map(|a| a.0).collect();
        let reply_to = input.reply_to.map(|r| r.0);
        Ok(Message(api.post(&me, input.channel_id.0, input.body, reply_to, &ids, None).await?))
    }

    async fn edit_message(&self, ctx: &Context<'_>, id: Id<MessageId>, body: String) -> Res<Message> {
        let api = api(ctx);
        let message: MessageId = id.0;
        let channel = api.channel_of_message(&message).await?;
        api.message_cmd(ctx, channel, MessageCommand::Edit { message, text: body }).await?;
        api.read_your_writes(ctx, &["timeline"]).await?;
        let rows = openguild_projections::queries::messages_by_id(api.projections.db(), &[message])
            .await
            .map_err(ApiError::from)?;
        Ok(Message(rows.into_iter().next().ok_or_else(|| ApiError::not_found("the message is gone"))?))
    }

    async fn delete_message(
        &self,
        ctx: &Context<'_>,
        id: Id<MessageId>,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        let api = api(ctx);
        let message: MessageId = id.0;
        let channel = api.channel_of_message(&message).await?;
        api.message_cmd(ctx, channel, MessageCommand::Redact { message, reason }).await?;
        Ok(true)
    }

    async fn add_reaction(&self, ctx: &Context<'_>, message_id: Id<MessageId>, emoji: String) -> Res<bool> {
        let api = api(ctx);
        let message: MessageId = message_id.0;
        let channel = api.channel_of_message(&message).await?;
        api.message_cmd(ctx, channel, MessageCommand::React { message, emoji }).await?;
        Ok(true)
    }

    async fn remove_reaction(&self, ctx: &Context<'_>, message_id: Id<MessageId>, emoji: String) -> Res<bool> {
        let api = api(ctx);
        let message: MessageId = message_id.0;
        let channel = api.channel_of_message(&message).await?;
        api.message_cmd(ctx, channel, MessageCommand::Unreact { message, emoji }).await?;
        Ok(true)
    }

    /// Moves the viewer's read marker in a channel or DM to `messageId` (a message of that
    /// channel); their other devices hear of it on `myEvents`.
    async fn mark_read(&self, ctx: &Context<'_>, channel_id: Id<ChannelId>, message_id: Id<MessageId>) -> Res<bool> {
        let api = api(ctx);
        let me = api.actor(ctx).await?;
        api.mark_read(&me, channel_id.0, message_id.0).await?;
        Ok(true)
    }

    /// Sets how loudly a guild, or one of its channels (or a DM), may call on the viewer;
    /// `level: null` goes back to the guild's level (for a channel) or `ALL`.
    async fn set_notification_level(
        &self,
        ctx: &Context<'_>,
        guild_id: Option<Id<GuildId>>,
        channel_id: Option<Id<ChannelId>>,
        level: Option<super::NotificationLevel>,
    ) -> Res<bool> {
        let api = api(ctx);
        let me = api.actor(ctx).await?;
        let (guild, channel) = (guild_id.map(|g| g.0), channel_id.map(|c| c.0));
        match (guild, channel) {
            (Some(g), None) => {
                api.member_view(&me, g).await?;
            }
            (None, Some(c)) => {
                api.channel_view(&me, c).await?;
            }
            _ => return Err(ApiError::invalid("guildId", "give guildId or channelId, not both or neither").into()),
        }
        let cmd = openguild_domain::account::AccountCommand::SetNotify { guild, channel, level: level.map(Into::into) };
        api.own_account(ctx, cmd).await?;
        Ok(true)
    }

    /// Pins a message to its channel (MANAGE_MESSAGES in a guild; anyone in a DM).
    async fn pin_message(&self, ctx: &Context<'_>, message_id: Id<MessageId>) -> Res<bool> {
        let api = api(ctx);
        let message: MessageId = message_id.0;
        let channel = api.channel_of_message(&message).await?;
        api.message_cmd(ctx, channel, MessageCommand::Pin { message }).await?;
        Ok(true)
    }

    async fn unpin_message(&self, ctx: &Context<'_>, message_id: Id<MessageId>) -> Res<bool> {
        let api = api(ctx);
        let message: MessageId = message_id.0;
        let channel = api.channel_of_message(&message).await?;
        api.message_cmd(ctx, channel, MessageCommand::Unpin { message }).await?;
        Ok(true)
    }

    /// Tells the channel the viewer is typing (not stored; no cursor).
    async fn typing(&self, ctx: &Context<'_>, channel_id: Id<ChannelId>) -> Res<bool> {
        let api = api(ctx);
        let me = api.actor(ctx).await?;
        api.typing_in(&me, channel_id.0).await?;
        Ok(true)
    }

    async fn create_role(&self, ctx: &Context<'_>, input: CreateRoleInput) -> Res<RoleObj> {
        let api = api(ctx);
        let guild = input.guild_id.0;
        let role = RoleId::from_bytes(random16());
        let permissions = permissions_of(&input.permissions);
        api.guild_cmd(ctx, guild, GuildCommand::CreateRole { role, name: input.name, permissions }).await?;
        let g = api.member_view(&viewer(ctx)?.user, guild).await?;
        super::types::role_obj(&g, role).ok_or_else(|| ApiError::not_found("the role is gone").into())
    }

    async fn update_role(&self, ctx: &Context<'_>, input: UpdateRoleInput) -> Res<RoleObj> {
        let api = api(ctx);
        let guild = input.guild_id.0;
        let role: RoleId = input.role_id.0;
        let permissions = input.permissions.as_deref().map(permissions_of);
        api.guild_cmd(ctx, guild, GuildCommand::UpdateRole { role, name: input.name, permissions }).await?;
        let g = api.member_view(&viewer(ctx)?.user, guild).await?;
        super::types::role_obj(&g, role).ok_or_else(|| ApiError::not_found("the role is gone").into())
    }

    async fn delete_role(&self, ctx: &Context<'_>, guild_id: Id<GuildId>, role_id: Id<RoleId>) -> Res<bool> {
        let cmd = GuildCommand::DeleteRole { role: role_id.0 };
        api(ctx).guild_cmd(ctx, guild_id.0, cmd).await?;
        Ok(true)
    }

    /// Sets the order of the roles: every role but `@everyone`, lowest first. Returns the
    /// roles highest first, as `Guild.roles` does.
    async fn reorder_roles(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        role_ids: Vec<Id<RoleId>>,
    ) -> Res<Vec<RoleObj>> {
        let api = api(ctx);
        let guild = guild_id.0;
        let order = role_ids.into_iter().map(|r| r.0).collect();
        api.guild_cmd(ctx, guild, GuildCommand::ReorderRoles { order }).await?;
        let g = api.member_view(&viewer(ctx)?.user, guild).await?;
        Ok(super::types::roles_of(&g))
    }

    async fn assign_role(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        user_id: Id<UserId>,
        role_id: Id<RoleId>,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        let cmd = GuildCommand::AssignRole { user: user_id.0, role: role_id.0, reason };
        api(ctx).guild_cmd(ctx, guild_id.0, cmd).await?;
        Ok(true)
    }

    async fn unassign_role(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        user_id: Id<UserId>,
        role_id: Id<RoleId>,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        let cmd = GuildCommand::UnassignRole { user: user_id.0, role: role_id.0, reason };
        api(ctx).guild_cmd(ctx, guild_id.0, cmd).await?;
        Ok(true)
    }

    async fn kick_member(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        user_id: Id<UserId>,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        let cmd = GuildCommand::Kick { user: user_id.0, reason };
        api(ctx).guild_cmd(ctx, guild_id.0, cmd).await?;
        Ok(true)
    }

    /// Bans a member; their messages of the last `deleteMessageSeconds` are removed.
    async fn ban_member(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        user_id: Id<UserId>,
        #[graphql(default)] reason: String,
        #[graphql(default, validator(maximum = 604_800))] delete_message_seconds: u32,
    ) -> Res<bool> {
        let cmd = GuildCommand::Ban { user: user_id.0, reason, purge_seconds: delete_message_seconds };
        api(ctx).guild_cmd(ctx, guild_id.0, cmd).await?;
        Ok(true)
    }

    async fn unban_member(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        user_id: Id<UserId>,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        let cmd = GuildCommand::Unban { user: user_id.0, reason };
        api(ctx).guild_cmd(ctx, guild_id.0, cmd).await?;
        Ok(true)
    }

    /// Times a member out for `seconds` (at most 28 days): they can read but not speak.
    async fn timeout_member(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        user_id: Id<UserId>,
        #[graphql(validator(minimum = 1, maximum = 2_419_200))] seconds: u32,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        let until = now().plus_millis(u64::from(seconds) * 1000);
        let cmd = GuildCommand::Timeout { user: user_id.0, until, reason };
        api(ctx).guild_cmd(ctx, guild_id.0, cmd).await?;
        Ok(true)
    }

    async fn remove_timeout(
        &self,
        ctx: &Context<'_>,
        guild_id: Id<GuildId>,
        user_id: Id<UserId>,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        let cmd = GuildCommand::RemoveTimeout { user: user_id.0, reason };
        api(ctx).guild_cmd(ctx, guild_id.0, cmd).await?;
        Ok(true)
    }

    async fn set_slow_mode(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        #[graphql(validator(maximum = 21_600))] seconds: u32,
    ) -> Res<ChannelObj> {
        let channel: ChannelId = channel_id.0;
        api(ctx).changed_channel(ctx, channel, GuildCommand::SetSlowMode { channel, seconds }).await
    }

    /// Renames a channel or sets its topic (an empty topic clears it).
    async fn update_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        name: Option<String>,
        topic: Option<String>,
    ) -> Res<ChannelObj> {
        let channel: ChannelId = channel_id.0;
        api(ctx).changed_channel(ctx, channel, GuildCommand::UpdateChannel { channel, name, topic }).await
    }

    /// Moves a channel into a category (`categoryId` absent: uncategorised) at `position`;
    /// without a position, after the last channel already there.
    async fn move_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        category_id: Option<Id<CategoryId>>,
        #[graphql(validator(maximum = 10_000))] position: Option<u32>,
    ) -> Res<ChannelObj> {
        let channel: ChannelId = channel_id.0;
        let category = category_id.map(|c| c.0);
        api(ctx).changed_channel(ctx, channel, GuildCommand::MoveChannel { channel, category, position }).await
    }

    /// Deletes a channel; its messages stay in the event log.
    async fn delete_channel(&self, ctx: &Context<'_>, channel_id: Id<ChannelId>) -> Res<bool> {
        let channel: ChannelId = channel_id.0;
        api(ctx).channel_cmd(ctx, channel, GuildCommand::DeleteChannel { channel }).await?;
        Ok(true)
    }

    async fn lock_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        locked: bool,
        #[graphql(default)] reason: String,
    ) -> Res<ChannelObj> {
        let channel: ChannelId = channel_id.0;
        api(ctx).changed_channel(ctx, channel, GuildCommand::LockChannel { channel, locked, reason }).await
    }

    /// Sets the permission overwrite of a role or member on a channel (empty lists remove it).
    async fn set_channel_overwrite(
        &self,
        ctx: &Context<'_>,
        channel_id: Id<ChannelId>,
        role_id: Option<Id<RoleId>>,
        user_id: Option<Id<UserId>>,
        allow: Vec<Permission>,
        deny: Vec<Permission>,
    ) -> Res<bool> {
        use openguild_domain::permissions::OverwriteTarget;
        let api = api(ctx);
        let channel: ChannelId = channel_id.0;
        let target = match (role_id, user_id) {
            (Some(r), None) => OverwriteTarget::Role(r.0),
            (None, Some(u)) => OverwriteTarget::Member(u.0),
            _ => return Err(ApiError::invalid("target", "give roleId or userId, one of them").into()),
        };
        let cmd = GuildCommand::SetOverwrite {
            place: Place::Channel(channel),
            target,
            allow: permissions_of(&allow),
            deny: permissions_of(&deny),
        };
        api.channel_cmd(ctx, channel, cmd).await?;
        Ok(true)
    }

    async fn report_message(&self, ctx: &Context<'_>, message_id: Id<MessageId>, reason: String) -> Res<Report> {
        let api = api(ctx);
        let message: MessageId = message_id.0;
        let channel = api.channel_of_message(&message).await?;
        let me = viewer(ctx)?.user.clone();
        let guild = api.commands.guild_of(channel).await.map_err(ApiError::from)?;
        let target = api.commands.report_target(channel, message).await.map_err(ApiError::from)?;
        let report = ReportId::from_bytes(random16());
        let done = api
            .guild_cmd(ctx, guild, GuildCommand::FileReport { report, target: target.clone(), reason: reason.clone() })
            .await?;
        let (user, channel_id, message_id) = match target {
            openguild_domain::ReportTarget::Message { channel, message, author } => {
                (author, Some(ID(channel.to_string())), Some(ID(message.to_string())))
            }
            openguild_domain::ReportTarget::Member { user } => (user, None, None),
        };
        Ok(Report {
            id: ID(report.to_string()),
            reporter: ID(me.to_string()),
            target_user: ID(user.to_string()),
            target_channel_id: channel_id,
            target_message_id: message_id,
            reason,
            status: ReportStatus::Open,
            action: None,
            resolved_by: None,
            resolution: None,
            filed_at: super::DateTime(done.events.last().map_or(0, |e| e.core.ts.as_millis())),
            resolved_at: None,
            assignee: None,
            message: None,
        })
    }

    /// Takes a report for a moderator (`userId` absent: hands it back to the open queue).
    async fn assign_report(
        &self,
        ctx: &Context<'_>,
        report_id: Id<ReportId>,
        user_id: Option<Id<UserId>>,
    ) -> Res<bool> {
        let api = api(ctx);
        let report: ReportId = report_id.0;
        let assignee = user_id.map(|u| u.0);
        let guild = api.guild_of_report(&report).await?;
        api.guild_cmd(ctx, guild, GuildCommand::AssignReport { report, assignee }).await?;
        Ok(true)
    }

    async fn resolve_report(
        &self,
        ctx: &Context<'_>,
        report_id: Id<ReportId>,
        action: ReportAction,
        #[graphql(default)] reason: String,
    ) -> Res<bool> {
        let api = api(ctx);
        let report: ReportId = report_id.0;
        let guild = api.guild_of_report(&report).await?;
        api.guild_cmd(ctx, guild, GuildCommand::ResolveReport { report, action: action.into(), reason }).await?;
        Ok(true)
    }
}
