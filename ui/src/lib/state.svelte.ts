// The client's state: who is logged in, their guilds, the open guild and channel, and the
// live subscriptions that keep them current. Components read it and call its methods.
import { gql, setToken, subscribe, getToken, whenLoggedOut, type Unsubscribe } from './gql';
import { describeError } from './errors';
import {
  AddReactionDocument,
  BlockedUsersDocument,
  BlockUserDocument,
  ChannelEventsDocument,
  CreateGuildDocument,
  DeleteMessageDocument,
  DmsDocument,
  EditMessageDocument,
  GuildDocument,
  GuildEventsDocument,
  GuildsDocument,
  HistoryDocument,
  JoinGuildDocument,
  LeaveGuildDocument,
  LiveCursorDocument,
  LogoutDocument,
  MarkReadDocument,
  MeAndGuildsDocument,
  MembersDocument,
  MyEventsDocument,
  OpenDmDocument,
  PinMessageDocument,
  PinsDocument,
  RemoveReactionDocument,
  ReportMessageDocument,
  SendMessageDocument,
  TypingDocument,
  UnblockUserDocument,
  UnpinMessageDocument,
  VoiceRosterDocument,
  type GuildEventsSubscription,
  type MembersQuery,
  type MyEventsSubscription,
} from './generated';
import type { User, GuildSummary, Guild, Member, Message, ChannelEvent, Dm, Pin, MyEvent } from './types';
import { applyEvent, cursorNum, withMessage, withMyReaction, withOlder } from './timeline';
import { addressed, badge, firstUnread, newestMarkable, NO_BADGE, planMark, stillHeard, total, withHeard, type Badge, type Heard, type Known } from './unread';
import { router } from './router.svelte';
import { media, Uploads } from './uploads.svelte';
import { withThread, withThreadActivity, withThreadsFrom, type ThreadSummary } from './threads';
import { rostersToRefetch, withAnswer, withSelf, type Roster, type VoiceParticipant } from './voice';

/** The guild events that change who is in a voice channel, or how. */
const VOICE_KINDS = new Set(['voice.joined', 'voice.left', 'voice.track', 'voice.self', 'voice.server_muted', 'voice.disconnected', 'voice.moved']);
export type GuildEvent = GuildEventsSubscription['guildEvents'];

/** Where read cursors were kept before the server kept read markers: cleared once. */
const OLD_READ_KEY = 'og.read.';

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
  /** My direct messages, newest first. */
  dms = $state<Dm[]>([]);
  /** The people I blocked. */
  blocked = $state<User[]>([]);
  /** Posts by others heard live per channel, not yet counted by an answer (unread.ts). */
  heard = $state<Record<string, Heard[]>>({});
  /** The cursor each channel is read up to, as this client knows: its own or another device's marker. */
  readUpTo = $state<Record<string, number>>({});
  /** The open channel's unread messages when it was opened: the "N new messages" bar and divider. */
  newSince = $state<{ channelId: string; lastReadId: string | null; count: number; bar: boolean } | null>(null);
  /** The open channel's pins while their panel is open. */
  pins = $state<Pin[] | null>(null);
  pinsOpen = $state(false);
  /** When I last sent in each channel (for slow mode). */
  lastSentAt = $state<Record<string, number>>({});
  /** A moment to jump to in the timeline (a reply's original). */
  highlight = $state<string | null>(null);
  /** The message being edited in place, and the one the composer replies to. */
  editing = $state<string | null>(null);
  replyTo = $state<Message | null>(null);
  /** Files waiting to go with the open channel's next message. */
  uploads = new Uploads();
  /** Who is in each voice channel, as the server last answered (voice.ts). */
  voiceRosters = $state<Record<string, Roster>>({});

  /** Heard after a voice event's rosters are asked again (the voice session follows them). */
  #voiceListeners: Array<(e: GuildEvent) => void> = [];
  #resetListeners: Array<() => void> = [];

  #olderCursor: string | null = null;
  #channelSub: Unsubscribe | null = null;
  #guildSub: Unsubscribe | null = null;
  #mySub: Unsubscribe | null = null;
  #refresh: ReturnType<typeof setInterval> | null = null;
  #guildReload: ReturnType<typeof setTimeout> | null = null;
  #countsReload: ReturnType<typeof setTimeout> | null = null;
  #pinsReload: ReturnType<typeof setTimeout> | null = null;
  /** Events already applied per channel (a reconnect may replay them). */
  #applied = new Map<string, number>();
  /** Whether the reader is at the newest message of the open channel (the timeline says). */
  #atBottom = false;
  /** Per channel: the marker the server has (sent or heard of), when the last went out, and
   * the one waiting for the rest of its second (sent even if the reader has moved on). */
  #marks = new Map<string, { sent: number; lastAt: number; pending: { id: string; cursor: number } | null; timer: ReturnType<typeof setTimeout> | null }>();

  /** The server's counts for every channel and DM, by id. */
  known = $derived.by(() => {
    const out = new Map<string, Known>();
    for (const g of this.guilds) for (const c of g.channels) out.set(c.id, c);
    for (const d of this.dms) out.set(d.id, d);
    return out;
  });

  constructor() {
    for (let i = localStorage.length - 1; i >= 0; i--) {
      const k = localStorage.key(i);
      if (k?.startsWith(OLD_READ_KEY)) localStorage.removeItem(k);
    }
    whenLoggedOut(() => this.reset('Your session has ended. Please log in again.'));
    // Coming back to the tab counts as seeing the channel, if it is scrolled to the end.
    document.addEventListener('visibilitychange', () => this.seeNewest());
  }

  /** `f` hears each voice event of the open guild once the rosters it changed are read again. */
  onVoiceEvent(f: (e: GuildEvent) => void): void {
    this.#voiceListeners.push(f);
  }

  /** `f` runs when the session ends (logout, expiry). */
  onReset(f: () => void): void {
    this.#resetListeners.push(f);
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
      this.dms = d.dms;
      this.blocked = d.blockedUsers;
    } catch (e) {
      this.say(e);
      return;
    }
    this.#mySub?.();
    this.#mySub = subscribe(MyEventsDocument, {}, (d) => this.#onMyEvent(d.myEvents));
    // Posts that do not mention me (outside DMs) and presence have no live event for me:
    // refresh the counts and members every 20 s.
    this.#refresh ??= setInterval(() => {
      void this.refreshGuilds();
      void this.refreshDms();
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
    for (const m of this.#marks.values()) if (m.timer) clearTimeout(m.timer);
    this.#marks.clear();
    this.me = null;
    this.guilds = [];
    this.dms = [];
    this.blocked = [];
    this.heard = {};
    this.readUpTo = {};
    this.newSince = null;
    this.pins = null;
    this.pinsOpen = false;
    this.guild = null;
    this.members = [];
    this.messages = [];
    this.channelId = null;
    this.uploads.clear();
    this.voiceRosters = {};
    media.release();
    for (const f of this.#resetListeners) f();
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

  #dmsAsked = 0;
  async refreshDms(): Promise<void> {
    const asked = ++this.#dmsAsked;
    try {
      const d = await gql(DmsDocument);
      if (asked === this.#dmsAsked) this.dms = d.dms;
    } catch {
      // A background refresh; the next one tries again.
    }
  }

  /** Asks for every count again soon (coalescing bursts): another device moved a marker. */
  refreshCountsSoon(): void {
    if (this.#countsReload) clearTimeout(this.#countsReload);
    this.#countsReload = setTimeout(() => {
      this.#countsReload = null;
      void this.refreshGuilds();
      void this.refreshDms();
    }, 250);
  }

  // ---- unread and mentions ----

  /** A channel's or DM's badge; none for the open one, which is being read. */
  badge(channelId: string): Badge {
    if (channelId === this.channelId) return NO_BADGE;
    const b = badge(this.known.get(channelId), this.heard[channelId] ?? [], this.readUpTo[channelId] ?? 0);
    return this.dms.some((d) => d.id === channelId) ? addressed(b) : b;
  }

  guildBadge(g: GuildSummary): Badge {
    return total(g.channels.map((c) => this.badge(c.id)));
  }

  dmsBadge(): Badge {
    return total(this.dms.map((d) => this.badge(d.id)));
  }

  #mark(channelId: string) {
    let m = this.#marks.get(channelId);
    if (!m) this.#marks.set(channelId, (m = { sent: 0, lastAt: 0, pending: null, timer: null }));
    return m;
  }

  /** The server's marker is at `cursor` (its answer or another device said so). */
  #serverRead(channelId: string, cursor: number): void {
    const m = this.#mark(channelId);
    m.sent = Math.max(m.sent, cursor);
    this.#readTo(channelId, cursor);
  }

  /** Everything up to `cursor` in `channelId` is read (here or on another device). */
  #readTo(channelId: string, cursor: number): void {
    if (cursor > (this.readUpTo[channelId] ?? 0)) this.readUpTo[channelId] = cursor;
    const left = (this.heard[channelId] ?? []).filter((h) => h.cursor > cursor);
    if (left.length !== (this.heard[channelId]?.length ?? 0)) this.heard[channelId] = left;
  }

  /** The timeline says whether the reader is at its end; there, the newest message is seen. */
  viewing(atBottom: boolean): void {
    this.#atBottom = atBottom;
    if (atBottom) this.seeNewest();
  }

  /**
   * The reader sees the newest message of the open channel: move the read marker there, at
   * most once a second and only forward.
   */
  seeNewest(): void {
    const channelId = this.channelId;
    if (!channelId || !this.#atBottom || document.visibilityState !== 'visible') return;
    const newest = newestMarkable(this.messages);
    if (!newest) return;
    const cursor = cursorNum(newest.cursor);
    // Seen is seen: the badge goes now, whenever the marker goes out.
    this.#readTo(channelId, cursor);
    const m = this.#mark(channelId);
    const plan = planMark(Math.max(m.sent, m.pending?.cursor ?? 0), cursor, m.lastAt, Date.now());
    if (plan.do === 'skip') return;
    m.pending = { id: newest.id, cursor };
    if (plan.do === 'send') this.#sendMark(channelId);
    else m.timer ??= setTimeout(() => this.#sendMark(channelId), plan.ms);
  }

  #sendMark(channelId: string): void {
    const m = this.#mark(channelId);
    if (m.timer) clearTimeout(m.timer);
    m.timer = null;
    const p = m.pending;
    m.pending = null;
    if (!p || p.cursor <= m.sent) return;
    m.sent = p.cursor;
    m.lastAt = Date.now();
    gql(MarkReadDocument, { channelId, messageId: p.id }).catch((e) => this.say(e));
  }

  /** Loads older pages until the first unread message is there, then shows it. */
  async jumpToFirstUnread(): Promise<void> {
    const since = this.newSince;
    if (!since || since.channelId !== this.channelId) return;
    const find = () => firstUnread(this.messages, since.lastReadId, this.me?.id ?? null, this.hasOlder);
    for (let i = 0; i < 20 && !find() && this.hasOlder; i++) await this.loadOlder();
    const m = find();
    since.bar = false;
    if (m) this.highlight = m.id;
    else this.say('The first unread message is no longer in this channel.');
  }

  #heardPost(e: MyEvent): void {
    const m = e.message;
    if (!e.channelId || !m || m.author.id === this.me?.id) return;
    const channelId = e.channelId;
    const dm = this.dms.find((d) => d.id === channelId);
    const inGuild = !dm && this.guilds.some((g) => g.channels.some((c) => c.id === channelId));
    // Outside DMs, myEvents only carries posts that mention me or everyone (the server
    // decides who a post names); in a DM every post counts as addressed to me anyway.
    this.heard[channelId] = withHeard(this.heard[channelId] ?? [], { cursor: cursorNum(m.cursor), mention: true });
    if (dm) this.dms = [dm, ...this.dms.filter((d) => d.id !== channelId)];
    else if (!inGuild) void this.refreshDms(); // a DM someone just opened with me
  }

  #heardRead(e: MyEvent): void {
    if (!e.channelId || !e.messageId) return;
    const m = e.channelId === this.channelId ? this.messages.find((x) => x.id === e.messageId) : undefined;
    // Where the marker is, only a loaded message tells; otherwise the server counts again.
    if (m) this.#serverRead(e.channelId, cursorNum(m.cursor));
    else this.refreshCountsSoon();
  }

  // ---- guilds ----

  async openGuild(id: string): Promise<boolean> {
    if (this.guild?.id === id) return true;
    this.pinsOpen = false;
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
    this.loadRosters();
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
      return;
    }
    // A voice channel just made (or just visible) has no roster yet.
    this.loadRosters(true);
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

  // ---- voice rosters (the connection itself is voice.svelte.ts) ----

  /** Who is in a voice channel now. */
  roster(channelId: string): VoiceParticipant[] {
    return this.voiceRosters[channelId]?.list ?? [];
  }

  /** Reads the rosters of the open guild's voice channels (`missing`: only those not read yet). */
  loadRosters(missing = false): void {
    for (const c of this.guild?.channels ?? []) {
      if (c.kind !== 'VOICE') continue;
      const known = this.voiceRosters[c.id];
      if (missing && known) continue;
      // Shown until the answer comes; events heard while this guild was not open are not in it.
      if (known) this.voiceRosters = { ...this.voiceRosters, [c.id]: { ...known, at: 0 } };
      void this.loadRoster(c.id, null);
    }
  }

  /** Reads a voice channel's roster, as of guild event `after` (the server waits for it). */
  async loadRoster(channelId: string, after: string | null): Promise<void> {
    try {
      const d = await gql(VoiceRosterDocument, { id: channelId, after });
      this.voiceRosters = withAnswer(this.voiceRosters, channelId, d.channel.voiceParticipants, cursorNum(after));
      const c = this.guild?.channels.find((x) => x.id === channelId);
      if (c && c.userLimit !== d.channel.userLimit) c.userLimit = d.channel.userLimit;
    } catch {
      // A channel the viewer may not see (or one just deleted): no roster. The next event asks again.
    }
  }

  /** My own mute and deafen in a roster, shown before the server's event comes back. */
  voiceSelf(channelId: string, muted: boolean, deafened: boolean): void {
    const r = this.voiceRosters[channelId];
    const me = this.me?.id;
    if (r && me) this.voiceRosters = { ...this.voiceRosters, [channelId]: { ...r, list: withSelf(r.list, me, muted, deafened) } };
  }

  #onVoiceEvent(e: GuildEvent): void {
    const asked = rostersToRefetch(e, this.voiceRosters).map((id) => this.loadRoster(id, e.cursor));
    void Promise.all(asked).then(() => {
      for (const f of this.#voiceListeners) f(e);
    });
  }

  #onGuildEvent(e: GuildEvent): void {
    // Who is in voice changed: that roster only, not the guild's structure.
    if (VOICE_KINDS.has(e.kind)) return this.#onVoiceEvent(e);
    // A thread started (here or by someone else) shows under its message in the open channel.
    if (e.kind.startsWith('thread.')) this.#threadsChangedSoon();
    // Structure changed: reload it (coalescing bursts), and members if they changed.
    if (this.#guildReload) clearTimeout(this.#guildReload);
    this.#guildReload = setTimeout(() => {
      void this.reloadGuild();
      if (e.kind.startsWith('member.') || e.kind.startsWith('role.')) void this.loadMembers();
    }, 50);
  }

  #onMyEvent(e: MyEventsSubscription['myEvents']): void {
    if (e.kind === 'message.posted') return this.#heardPost(e);
    if (e.kind === 'account.read') return this.#heardRead(e);
    if (e.kind.startsWith('account.block') || e.kind.startsWith('account.unblock')) void this.loadBlocked();
    void this.refreshGuilds();
    void this.refreshDms();
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
    this.uploads.clear();
    this.newSince = null;
    this.pins = null;
    this.pinsOpen = false;
    this.#atBottom = false;
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
      if (before === null) {
        // The newest page: where the reader left off, for the bar and the divider.
        const { lastReadMessageId: lastReadId, unreadCount: count } = d.channel;
        this.newSince = count > 0 ? { channelId, lastReadId, count, bar: true } : null;
        const marker = lastReadId ? this.messages.find((m) => m.id === lastReadId) : undefined;
        if (marker) this.#serverRead(channelId, cursorNum(marker.cursor));
        this.seeNewest();
      }
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
    const live = { messages: this.messages, applied: this.#applied.get(e.channelId) ?? 0, typing: this.typing };
    const step = applyEvent(live, e, this.me?.id ?? null, Date.now());
    this.#applied.set(e.channelId, step.live.applied);
    this.messages = step.live.messages;
    this.typing = step.live.typing;
    if (step.announcement) this.announcement = step.announcement;
    if (e.kind === 'MESSAGE_PINNED' || e.kind === 'MESSAGE_UNPINNED') this.#reloadPinsSoon();
  }

  async send(body: string, replyTo: string | null, attachments: string[] = []): Promise<boolean> {
    const channelId = this.channelId;
    if (!channelId) return false;
    const m = await this.act(() => gql(SendMessageDocument, { input: { channelId, body, replyTo, attachments } }));
    if (!m) return false;
    this.lastSentAt[channelId] = Date.now();
    const msg = m.sendMessage;
    if (this.channelId === channelId) this.messages = withMessage(this.messages, msg);
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

  /** Adds my reaction, or takes it back if it is mine already (`Reaction.me`). */
  async react(id: string, emoji: string, mine?: boolean): Promise<void> {
    const v = { messageId: id, emoji };
    // The message may be in the open thread rather than here: its caller knows then.
    mine ??= !!this.messages.find((m) => m.id === id)?.reactions.find((r) => r.emoji === emoji)?.me;
    const done = await this.act<unknown>(() => (mine ? gql(RemoveReactionDocument, v) : gql(AddReactionDocument, v)));
    // The live event brings the count; this makes the button mine at once.
    if (done) this.messages = this.messages.map((m) => (m.id === id ? withMyReaction(m, emoji, !mine) : m));
  }

  // ---- threads (the open one is thread.svelte.ts) ----

  #threadsReload: ReturnType<typeof setTimeout> | null = null;
  #threadsChangedSoon(): void {
    if (this.#threadsReload) clearTimeout(this.#threadsReload);
    this.#threadsReload = setTimeout(async () => {
      const channelId = this.channelId;
      if (!channelId) return;
      try {
        const d = await gql(HistoryDocument, { id: channelId, before: null });
        if (this.channelId === channelId) this.messages = withThreadsFrom(this.messages, d.channel.messages.nodes);
      } catch {
        // Shown at the next load.
      }
    }, 100);
  }

  /** A thread was started from `messageId` (this answer came before the guild's event). */
  threadStarted(messageId: string, thread: ThreadSummary): void {
    this.messages = withThread(this.messages, messageId, thread);
  }

  /** The open thread heard a post or a deletion: its line under the message follows. */
  threadActivity(threadId: string, messageCount: number, lastActivity: string | null): void {
    this.messages = withThreadActivity(this.messages, threadId, messageCount, lastActivity);
  }

  // ---- pins ----

  async loadPins(): Promise<void> {
    const channelId = this.channelId;
    if (!channelId) return;
    const d = await this.act(() => gql(PinsDocument, { id: channelId }));
    if (d && this.channelId === channelId && this.pinsOpen) this.pins = d.channel.pins;
  }

  togglePins(): void {
    this.pinsOpen = !this.pinsOpen;
    this.pins = null;
    if (this.pinsOpen) void this.loadPins();
  }

  #reloadPinsSoon(): void {
    if (!this.pinsOpen) return;
    if (this.#pinsReload) clearTimeout(this.#pinsReload);
    this.#pinsReload = setTimeout(() => void this.loadPins(), 50);
  }

  async pin(id: string, pinned: boolean): Promise<void> {
    const done = await this.act<unknown>(() => (pinned ? gql(PinMessageDocument, { messageId: id }) : gql(UnpinMessageDocument, { messageId: id })));
    if (done) {
      this.messages = this.messages.map((m) => (m.id === id ? { ...m, pinned } : m));
      this.#reloadPinsSoon();
    }
  }

  // ---- direct messages and blocks ----

  /** Shows a DM: no guild is open while one is. */
  async openDmView(channelId: string): Promise<void> {
    if (this.guild) this.closeGuild();
    if (!this.dms.some((d) => d.id === channelId)) await this.refreshDms();
    await this.openChannel(channelId);
  }

  /** Leaves whatever channel is open (the DM list with none chosen). */
  closeChannel(): void {
    this.#channelSub?.();
    this.#channelSub = null;
    this.channelId = null;
    this.messages = [];
    this.newSince = null;
    this.pinsOpen = false;
  }

  /** The DM with `userIds` (the one there is, or a new one); its id, or null if refused. */
  async startDm(userIds: string[]): Promise<string | null> {
    const r = await this.act(() => gql(OpenDmDocument, { userIds }));
    if (!r) return null;
    const dm = r.openDm;
    this.dms = [dm, ...this.dms.filter((d) => d.id !== dm.id)];
    return dm.id;
  }

  async loadBlocked(): Promise<void> {
    const d = await this.act(() => gql(BlockedUsersDocument));
    if (d) this.blocked = d.blockedUsers;
  }

  async block(userId: string, blocked: boolean): Promise<boolean> {
    const done = await this.act<unknown>(() => (blocked ? gql(BlockUserDocument, { userId }) : gql(UnblockUserDocument, { userId })));
    if (!done) return false;
    await this.loadBlocked();
    return true;
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
