// The shapes the client keeps in its state, named. Each is an operation's answer, or part of
// one, as generated from docs/schema.graphql, so a schema change that breaks one fails
// `npm run check`.
import type {
  ChanFragment,
  ChannelEventsSubscription,
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

/** The hub a user id (`@handle:hub`) lives on. */
export function hubOf(userId: string): string {
  return userId.slice(userId.indexOf(':') + 1);
}
