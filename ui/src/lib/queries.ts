// Every GraphQL document the client sends, in one place, and the shapes they return.

export interface User {
  id: string;
  handle: string;
}
export interface Reaction {
  emoji: string;
  count: number;
}
export interface Message {
  id: string;
  channelId: string;
  author: User;
  body: string | null;
  replyToId: string | null;
  createdAt: string;
  editedAt: string | null;
  deleted: boolean;
  pinned: boolean;
  cursor: string;
  reactions: Reaction[];
}
export interface Category {
  id: string;
  name: string;
  position: number;
}
export interface Channel {
  id: string;
  name: string;
  kind: 'TEXT' | 'VOICE' | 'ANNOUNCEMENT';
  topic: string;
  categoryId: string | null;
  position: number;
  slowModeSeconds: number;
  locked: boolean;
  archived: boolean;
  myPermissions: string[];
  lastMessageCursor: string | null;
}
export interface Role {
  id: string;
  name: string;
  permissions: string[];
  position: number;
}
export interface Member {
  user: User;
  nickname: string | null;
  roles: string[];
  timedOutUntil: string | null;
  online: boolean;
}
export interface GuildSummary {
  id: string;
  name: string;
  channels: Array<{ id: string; lastMessageCursor: string | null }>;
}
export interface Guild {
  id: string;
  name: string;
  owner: User | null;
  archived: boolean;
  myPermissions: string[];
  categories: Category[];
  channels: Channel[];
  roles: Role[];
  me: { roles: string[]; timedOutUntil: string | null } | null;
}
export interface ChannelEvent {
  cursor: string;
  kind: string;
  channelId: string;
  actor: User;
  at: string;
  messageId: string | null;
  body: string | null;
  emoji: string | null;
  message: Message | null;
}

export const MESSAGE = `fragment Msg on Message {
  id channelId author { id handle } body replyToId createdAt editedAt deleted pinned cursor
  reactions { emoji count }
}`;

export const CHANNEL = `fragment Chan on Channel {
  id name kind topic categoryId position slowModeSeconds locked archived myPermissions lastMessageCursor
}`;

export const ME_AND_GUILDS = `query {
  me { id handle }
  guilds { id name channels { id lastMessageCursor } }
  liveCursor
}`;

export const GUILD = `query Guild($id: ID!) {
  guild(id: $id) {
    id name archived myPermissions owner { id handle }
    categories { id name position }
    channels { ...Chan }
    roles { id name permissions position }
    me { roles timedOutUntil }
  }
}
${CHANNEL}`;

export const MEMBERS = `query Members($id: ID!, $after: String) {
  guild(id: $id) {
    members(first: 100, after: $after) {
      nodes { user { id handle } nickname roles timedOutUntil online }
      pageInfo { hasNextPage endCursor }
    }
  }
}`;

export const HISTORY = `query History($id: ID!, $before: String) {
  channel(id: $id) {
    messages(last: 50, before: $before) {
      nodes { ...Msg }
      pageInfo { hasPreviousPage startCursor }
    }
  }
}
${MESSAGE}`;

export const CHANNEL_EVENTS = `subscription Live($id: ID!, $since: String) {
  channelEvents(channelId: $id, since: $since) {
    cursor kind channelId actor { id handle } at messageId body emoji
    message { ...Msg }
  }
}
${MESSAGE}`;

export const GUILD_EVENTS = `subscription GuildLive($id: ID!, $since: String) {
  guildEvents(guildId: $id, since: $since) { cursor kind channelId target { id } }
}`;

export const MY_EVENTS = `subscription Mine($since: String) {
  myEvents(since: $since) { cursor kind guildId reason }
}`;

export const AUDIT_KINDS = `query AuditKinds { auditKinds }`;

export const AUDIT = `query Audit($id: ID!, $after: String, $filter: AuditFilter) {
  auditLog(guildId: $id, first: 50, after: $after, filter: $filter) {
    nodes { eventId kind actor target channelId reason at before after cursor summary }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const GUILD_AT = `query At($id: ID!, $position: Int!) {
  guildAt(id: $id, at: { position: $position }) {
    name position
    channels { id name kind slowModeSeconds locked }
    roles { id name position }
    members { userId roles }
    bans { userId reason }
    timeouts { userId until }
  }
}`;

export const REPORTS = `query Reports($id: ID!) {
  reports(guildId: $id) {
    id reporter targetUser targetChannelId targetMessageId reason status action resolvedBy resolution filedAt resolvedAt assignee
    message { body deleted author { handle } }
  }
}`;

export const SEARCH = `query Search($id: ID!, $q: String!) {
  search(guildId: $id, query: $q, first: 25) { nodes { ...Msg } }
}
${MESSAGE}`;
