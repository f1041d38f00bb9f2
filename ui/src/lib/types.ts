// The shapes the client keeps in its state, named. Each is an operation's answer, or part of
// one, as generated from docs/schema.graphql, so a schema change that breaks one fails
// `npm run check`.
import type {
  ChanFragment,
  ChannelEventsSubscription,
  DmFragment,
  MyEventsSubscription,
  PinsQuery,
  GuildQuery,
  GuildSummaryFragment,
  MeAndGuildsQuery,
  MembersQuery,
  MsgFragment,
} from './generated';

export type User = MeAndGuildsQuery['me'];
export type Message = MsgFragment;
export type Channel = ChanFragment;
export type GuildSummary = GuildSummaryFragment;
export type Guild = GuildQuery['guild'];
export type Member = MembersQuery['guild']['members']['nodes'][number];
export type ChannelEvent = ChannelEventsSubscription['channelEvents'];
/** A direct message: a channel outside any guild, with its people and its counts. */
export type Dm = DmFragment;
export type Pin = PinsQuery['channel']['pins'][number];
export type MyEvent = MyEventsSubscription['myEvents'];

/** Whether a channel is a direct message (two people) or a group DM. */
export function isDm(channel: { kind: string }): boolean {
  return channel.kind === 'DM' || channel.kind === 'GROUP_DM';
}

/**
 * The user ids typed into "new message": separated by spaces or commas, each `@handle:hub`;
 * a bare `bob` or `@bob` is taken to be on the viewer's own hub (`home`).
 */
export function parseUserIds(text: string, home: string): string[] {
  const ids = text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((t) => (t.startsWith('@') ? t : `@${t}`))
    .map((t) => (t.includes(':') ? t : `${t}:${home}`));
  return [...new Set(ids)];
}

/** The hub a user id (`@handle:hub`) lives on. */
export function hubOf(userId: string): string {
  return userId.slice(userId.indexOf(':') + 1);
}
