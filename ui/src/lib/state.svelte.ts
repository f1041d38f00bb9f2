// The client's state: who is logged in, their guilds, the open guild and channel, and the
// live subscriptions that keep them current. Components read it and call its methods.
import { gql, setToken, subscribe, getToken, whenLoggedOut, type Unsubscribe } from './gql';
import { describeError } from './errors';
import {
  AddReactionDocument,
  ChannelEventsDocument,
  CreateGuildDocument,
  DeleteMessageDocument,
  EditMessageDocument,
  GuildDocument,
  GuildEventsDocument,
  GuildsDocument,
  HistoryDocument,
  JoinGuildDocument,
  LeaveGuildDocument,
  LiveCursorDocument,
  LogoutDocument,
  MeAndGuildsDocument,
  MembersDocument,
  MyEventsDocument,
  RemoveReactionDocument,
  ReportMessageDocument,
  SendMessageDocument,
  TypingDocument,
  type GuildEventsSubscription,
  type MembersQuery,
  type MyEventsSubscription,
} from './generated';
import type { User, GuildSummary, Guild, Member, Message, ChannelEvent } from './types';
import { applyEvent, cursorNum, withMessage, withOlder } from './timeline';
import { router } from './router.svelte';

const READ_KEY = 'og.read.';

class Store {
  me = $state<User | null>(null);
  guilds = $state<GuildSummary[]>([]);
  guild = $state<Guild | null>(null);
  members = $state<Member[]>([]);
  channelId = $state<string | null>(null);
  messages = $state<Message[]>([]);
  hasOlder = $state(false);
  loadingOlder = $state(false);
  typing = $state<Record<string, number>>({});
  /** A sentence for the toast area; cleared after a while. */
  notice = $state<string | null>(null);
  /** What the live region reads out: the newest message, in words. */
  announcement = $state('');
  /** Read cursors per channel, so unread markers survive a reload. */
  read = $state<Record<string, number>>({});
  /** When I last sent in each channel (for slow mode). */
  lastSentAt = $state<Record<string, number>>({});
  /** Reactions I made (message:emoji), so pressing one again removes it. */
  mine = $state<Record<string, true>>({});
  /** A moment to jump to in the timeline (a reply's original). */
  highlight = $state<string | null>(null);
  /** The message being edited in place, and the one the composer replies to. */
  editing = $state<string | null>(null);
  replyTo = $state<Message | null>(null);

  #olderCursor: string | null = null;
  #channelSub: Unsubscribe | null = null;
  #guildSub: Unsubscribe | null = null;
  #mySub: Unsubscribe | null = null;
  #refresh: ReturnType<typeof setInterval> | null = null;
  #guildReload: ReturnType<typeof setTimeout> | null = null;
  /** Events already applied per channel (a reconnect may replay them). */
  #applied = new Map<string, number>();

  constructor() {
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i)!;
      if (k.startsWith(READ_KEY)) this.read[k.slice(READ_KEY.length)] = Number(localStorage.getItem(k)) || 0;
    }
    whenLoggedOut(() => this.reset('Your session has ended. Please log in again.'));
  }

  get loggedIn(): boolean {
    return this.me !== null;
  }

  say(e: unknown): void {
    this.notice = typeof e === 'string' ? e : describeError(e);
    const shown = this.notice;
    setTimeout(() => {
      if (this.notice === shown) this.notice = null;
    }, 6000);
  }

  /** Runs a write and shows its refusal in words; returns whether it worked. */
  async act<T>(f: () => Promise<T>): Promise<T | undefined> {
    try {
      return await f();
    } catch (e) {
      this.say(e);
      return undefined;
    }
  }

  async start(): Promise<void> {
    if (!getToken()) return;
    try {
      const d = await gql(MeAndGuildsDocument);
      this.me = d.me;
      this.guilds = d.guilds;
    } catch (e) {
      this.say(e);
      return;
    }
    this.#mySub?.();
    this.#mySub = subscribe(MyEventsDocument, {}, (d) => this.#onMyEvent(d.myEvents));
    // Unread markers and presence have no live event: refresh them every 20 s.
    this.#refresh ??= setInterval(() => {
      void this.refreshGuilds();
      void this.loadMembers();
    }, 20_000);
  }

  async loggedInAs(token: string): Promise<void> {
    setToken(token);
    await this.start();
  }

  async logout(): Promise<void> {
    try {
      await gql(LogoutDocument);
    } catch {
      // The session may already be over; either way we forget it.
    }
    setToken(null);
    this.reset(null);
  }

  reset(notice: string | null): void {
    this.#channelSub?.();
    this.#guildSub?.();
    this.#mySub?.();
    this.#channelSub = this.#guildSub = this.#mySub = null;
    if (this.#refresh) clearInterval(this.#refresh);
    this.#refresh = null;
    this.me = null;
    this.guilds = [];
    this.guild = null;
    this.members = [];
    this.messages = [];
    this.channelId = null;
    if (notice) this.say(notice);
  }

  #guildsAsked = 0;
  async refreshGuilds(): Promise<void> {
    // Only the newest question's answer counts: an older one may predate a join or leave.
    const asked = ++this.#guildsAsked;
    try {
      const d = await gql(GuildsDocument);
      if (asked === this.#guildsAsked) this.guilds = d.guilds;
    } catch {
      // A background refresh; the next one tries again.
    }
  }

  unread(channelId: string, lastMessageCursor: string | null): boolean {
    if (channelId === this.channelId) return false;
    return cursorNum(lastMessageCursor) > (this.read[channelId] ?? 0);
  }

  guildUnread(g: GuildSummary): boolean {
    return g.channels.some((c) => this.unread(c.id, c.lastMessageCursor));
  }

  markRead(channelId: string, cursor: string | null): void {
    const n = cursorNum(cursor);
    if (n > (this.read[channelId] ?? 0)) {
      this.read[channelId] = n;
      localStorage.setItem(READ_KEY + channelId, String(n));
    }
  }

  // ---- guilds ----

  async openGuild(id: string): Promise<boolean> {
    if (this.guild?.id === id) return true;
    this.#guildSub?.();
    this.#guildSub = null;
    this.members = [];
    try {
      const d = await gql(GuildDocument, { id });
      this.guild = d.guild;
    } catch (e) {
      this.guild = null;
      this.say(e);
      return false;
    }
    void this.loadMembers();
    this.#guildSub = subscribe(GuildEventsDocument, { id }, (d) => this.#onGuildEvent(d.guildEvents));
    return true;
  }

  async reloadGuild(): Promise<void> {
    const id = this.guild?.id;
    if (!id) return;
    try {
      const d = await gql(GuildDocument, { id });
      // The guild may have been closed (left, kicked) while this was in flight.
      if (this.guild?.id === id) this.guild = d.guild;
    } catch (e) {
      if (this.guild?.id === id) this.say(e);
    }
  }

  /** Stops following the open guild (left, kicked or banned). */
  closeGuild(): void {
    this.#guildSub?.();
    this.#channelSub?.();
    this.#guildSub = this.#channelSub = null;
    if (this.#guildReload) clearTimeout(this.#guildReload);
    this.guild = null;
    this.members = [];
    this.channelId = null;
    this.messages = [];
  }

  async loadMembers(): Promise<void> {
    const id = this.guild?.id;
    if (!id) return;
    const all: Member[] = [];
    let after: string | null = null;
    try {
      for (;;) {
        const d: MembersQuery = await gql(MembersDocument, { id, after });
        all.push(...d.guild.members.nodes);
        if (!d.guild.members.pageInfo.hasNextPage || all.length >= 1000) break;
        after = d.guild.members.pageInfo.endCursor;
      }
    } catch (e) {
      this.say(e);
      return;
    }
    if (this.guild?.id === id) this.members = all;
  }

  #onGuildEvent(e: GuildEventsSubscription['guildEvents']): void {
    // Structure changed: reload it (coalescing bursts), and members if they changed.
    if (this.#guildReload) clearTimeout(this.#guildReload);
    this.#guildReload = setTimeout(() => {
      void this.reloadGuild();
      if (e.kind.startsWith('member.') || e.kind.startsWith('role.')) void this.loadMembers();
    }, 50);
  }

  #onMyEvent(e: MyEventsSubscription['myEvents']): void {
    void this.refreshGuilds();
    if (e.guildId && e.guildId === this.guild?.id) {
      if (e.kind === 'member.kicked' || e.kind === 'member.banned') {
        const what = e.kind === 'member.kicked' ? 'kicked from' : 'banned from';
        this.say(`You were ${what} ${this.guild.name}${e.reason ? `: ${e.reason}` : ''}.`);
        this.closeGuild();
        router.go({ name: 'home' });
        return;
      }
      void this.reloadGuild();
      if (e.kind === 'member.timed_out') this.say(`You were timed out${e.reason ? `: ${e.reason}` : ''}.`);
    }
  }

  // ---- channels and messages ----

  async openChannel(channelId: string): Promise<void> {
    if (this.channelId === channelId && this.#channelSub) return;
    this.#channelSub?.();
    this.#channelSub = null;
    this.channelId = channelId;
    this.messages = [];
    this.hasOlder = false;
    this.#olderCursor = null;
    this.typing = {};
    this.editing = null;
    this.replyTo = null;
    const channel = this.guild?.channels.find((c) => c.id === channelId);
    if (channel?.kind === 'VOICE') return;
    // Follow first (from the live cursor), then read history: nothing falls in between.
    let since: string | null = null;
    try {
      since = (await gql(LiveCursorDocument)).liveCursor;
    } catch (e) {
      this.say(e);
    }
    if (this.channelId !== channelId) return;
    this.#channelSub = subscribe(
      ChannelEventsDocument,
      { id: channelId, since },
      (d) => this.#onChannelEvent(d.channelEvents),
      (err) => this.say(err),
    );
    await this.#loadPage(channelId, null);
  }

  async loadOlder(): Promise<void> {
    if (!this.channelId || !this.hasOlder || this.loadingOlder) return;
    await this.#loadPage(this.channelId, this.#olderCursor);
  }

  async #loadPage(channelId: string, before: string | null): Promise<void> {
    this.loadingOlder = true;
    try {
      const d = await gql(HistoryDocument, { id: channelId, before });
      if (this.channelId !== channelId) return;
      const page = d.channel.messages;
      this.messages = withOlder(this.messages, page.nodes);
      this.hasOlder = page.pageInfo.hasPreviousPage;
      this.#olderCursor = page.pageInfo.startCursor;
      const last = this.messages.at(-1);
      if (last) this.markRead(channelId, last.cursor);
    } catch (e) {
      this.say(e);
    } finally {
      this.loadingOlder = false;
    }
  }

  /** Loads older pages until `id` is there (a reply's original), then highlights it. */
  async jumpTo(id: string): Promise<void> {
    for (let i = 0; i < 20 && !this.messages.some((m) => m.id === id) && this.hasOlder; i++) await this.loadOlder();
    if (this.messages.some((m) => m.id === id)) this.highlight = id;
    else this.say('That message is no longer in this channel.');
  }

  #onChannelEvent(e: ChannelEvent): void {
    if (e.channelId !== this.channelId) return;
    const live = { messages: this.messages, applied: this.#applied.get(e.channelId) ?? 0, typing: this.typing, mine: this.mine };
    const step = applyEvent(live, e, this.me?.id ?? null, Date.now());
    this.#applied.set(e.channelId, step.live.applied);
    this.messages = step.live.messages;
    this.typing = step.live.typing;
    this.mine = step.live.mine;
    if (step.read) this.markRead(e.channelId, step.read);
    if (step.announcement) this.announcement = step.announcement;
  }

  async send(body: string, replyTo: string | null): Promise<boolean> {
    const channelId = this.channelId;
    if (!channelId) return false;
    const m = await this.act(() => gql(SendMessageDocument, { input: { channelId, body, replyTo } }));
    if (!m) return false;
    this.lastSentAt[channelId] = Date.now();
    const msg = m.sendMessage;
    if (this.channelId === channelId) this.messages = withMessage(this.messages, msg);
    this.markRead(channelId, msg.cursor);
    return true;
  }

  async edit(id: string, body: string): Promise<boolean> {
    const r = await this.act(() => gql(EditMessageDocument, { id, body }));
    if (r) {
      const m = this.messages.find((x) => x.id === id);
      if (m) {
        m.body = body;
        m.editedAt ??= new Date().toISOString();
      }
    }
    return !!r;
  }

  async remove(id: string): Promise<void> {
    await this.act(() => gql(DeleteMessageDocument, { id }));
  }

  async react(id: string, emoji: string): Promise<void> {
    const key = `${id}:${emoji}`;
    const v = { messageId: id, emoji };
    try {
      if (this.mine[key]) {
        await gql(RemoveReactionDocument, v);
        delete this.mine[key];
      } else {
        await gql(AddReactionDocument, v);
        this.mine[key] = true;
      }
    } catch (e: any) {
      // Reacted before this page was loaded: pressing it again means taking it back.
      if (e?.code === 'CONFLICT' && !this.mine[key]) {
        await this.act(() => gql(RemoveReactionDocument, v));
      } else this.say(e);
    }
  }

  async report(id: string, reason: string): Promise<boolean> {
    const r = await this.act(() => gql(ReportMessageDocument, { messageId: id, reason }));
    if (r) this.say('Thanks. The moderators will look at your report.');
    return !!r;
  }

  #lastTyping = 0;
  typingNow(): void {
    const now = Date.now();
    if (!this.channelId || now - this.#lastTyping < 4000) return;
    this.#lastTyping = now;
    void gql(TypingDocument, { channelId: this.channelId }).catch(() => {});
  }

  // ---- joining and making ----

  async createGuild(name: string): Promise<string | null> {
    const r = await this.act(() => gql(CreateGuildDocument, { name }));
    if (!r) return null;
    await this.refreshGuilds();
    return r.createGuild.id;
  }

  async join(code: string): Promise<string | null> {
    const r = await this.act(() => gql(JoinGuildDocument, { code }));
    if (!r) return null;
    await this.refreshGuilds();
    return r.joinGuild.id;
  }

  async leave(guildId: string): Promise<void> {
    const r = await this.act(() => gql(LeaveGuildDocument, { guildId }));
    if (!r) return;
    this.closeGuild();
    this.guilds = this.guilds.filter((g) => g.id !== guildId);
    await this.refreshGuilds();
    router.go({ name: 'home' });
  }
}

export const store = new Store();
