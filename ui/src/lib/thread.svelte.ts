// The thread open in the side panel: a channel of the guild under a message, so its
// timeline is followed exactly as a channel's (live from `liveCursor`, then history, events
// applied once by timeline.ts), with its own composer and uploads. What it hears moves the
// "N replies" line under its message in the parent (store.threadActivity).
import { gql, subscribe, type Unsubscribe } from './gql';
import {
  ChannelEventsDocument,
  FollowThreadDocument,
  HistoryDocument,
  LiveCursorDocument,
  MarkReadDocument,
  SendMessageDocument,
  StartThreadDocument,
  ThreadDocument,
  UnfollowThreadDocument,
  type ThreadFragment,
} from './generated';
import { applyEvent, withMessage, withOlder } from './timeline';
import { newestMarkable } from './unread';
import { store } from './state.svelte';
import { Uploads } from './uploads.svelte';
import type { ChannelEvent, Message } from './types';

export type Thread = ThreadFragment;

class ThreadPanel {
  thread = $state<Thread | null>(null);
  messages = $state<Message[]>([]);
  typing = $state<Record<string, number>>({});
  loading = $state(false);
  hasOlder = $state(false);
  uploads = new Uploads();
  #olderCursor: string | null = null;
  #sub: Unsubscribe | null = null;
  #applied = 0;
  #count = 0;
  #lastMarked: string | null = null;

  /** Starts a thread under `messageId` (or gets the one it has) and opens it. */
  async start(messageId: string, name: string): Promise<boolean> {
    const r = await store.act(() => gql(StartThreadDocument, { messageId, name }));
    if (!r) return false;
    const t = r.startThread;
    store.threadStarted(messageId, { id: t.id, name: t.name, messageCount: t.messageCount, lastActivity: t.lastActivity });
    await this.open(t.id, t);
    return true;
  }

  async open(id: string, known?: Thread): Promise<void> {
    if (this.thread?.id === id && this.#sub) return;
    this.close();
    this.loading = true;
    try {
      const t = known ?? (await gql(ThreadDocument, { id })).channel;
      this.thread = t;
      this.#count = t.messageCount;
      // The line under its message says what the server counts now.
      store.threadActivity(t.id, t.messageCount, t.lastActivity);
      const since = (await gql(LiveCursorDocument)).liveCursor;
      if (this.thread?.id !== id) return;
      this.#sub = subscribe(ChannelEventsDocument, { id, since }, (d) => this.#onEvent(d.channelEvents), (e) => store.say(e));
      await this.#page(id, null);
    } catch (e) {
      store.say(e);
    } finally {
      this.loading = false;
    }
  }

  close(): void {
    this.#sub?.();
    this.#sub = null;
    this.thread = null;
    this.messages = [];
    this.typing = {};
    this.hasOlder = false;
    this.#olderCursor = null;
    this.#applied = 0;
    this.#lastMarked = null;
    this.uploads.clear();
  }

  async loadOlder(): Promise<void> {
    if (this.thread && this.hasOlder && !this.loading) await this.#page(this.thread.id, this.#olderCursor);
  }

  async #page(id: string, before: string | null): Promise<void> {
    const d = await gql(HistoryDocument, { id, before });
    if (this.thread?.id !== id) return;
    this.messages = withOlder(this.messages, d.channel.messages.nodes);
    this.hasOlder = d.channel.messages.pageInfo.hasPreviousPage;
    this.#olderCursor = d.channel.messages.pageInfo.startCursor;
    this.#markRead();
  }

  #onEvent(e: ChannelEvent): void {
    const t = this.thread;
    if (!t || e.channelId !== t.id) return;
    const had = this.messages.length;
    const gone = e.kind === 'MESSAGE_DELETED' && this.messages.some((m) => m.id === e.messageId && !m.deleted);
    const step = applyEvent({ messages: this.messages, applied: this.#applied, typing: this.typing }, e, store.me?.id ?? null, Date.now());
    this.#applied = step.live.applied;
    this.messages = step.live.messages;
    this.typing = step.live.typing;
    if (e.kind === 'MESSAGE_POSTED' && this.messages.length > had) this.#counted(+1, e.at);
    else if (gone && this.messages.some((m) => m.id === e.messageId && m.deleted)) this.#counted(-1, null);
    this.#markRead();
  }

  /** A post (or deletion) the thread counts: the parent's line follows. */
  #counted(delta: number, at: string | null): void {
    const t = this.thread;
    if (!t) return;
    this.#count = Math.max(0, this.#count + delta);
    store.threadActivity(t.id, this.#count, at);
  }

  /** The panel shows the whole thread: its newest message is read. */
  #markRead(): void {
    const t = this.thread;
    const newest = newestMarkable(this.messages);
    if (!t || !newest || newest.id === this.#lastMarked || document.visibilityState !== 'visible') return;
    this.#lastMarked = newest.id;
    gql(MarkReadDocument, { channelId: t.id, messageId: newest.id }).catch(() => {});
  }

  async send(body: string, attachments: string[]): Promise<boolean> {
    const t = this.thread;
    if (!t) return false;
    const r = await store.act(() => gql(SendMessageDocument, { input: { channelId: t.id, body, attachments } }));
    if (!r) return false;
    if (this.thread?.id === t.id) {
      const had = this.messages.length;
      this.messages = withMessage(this.messages, r.sendMessage);
      if (this.messages.length > had) this.#counted(+1, r.sendMessage.createdAt);
    }
    return true;
  }

  async toggleFollow(): Promise<void> {
    const t = this.thread;
    if (!t) return;
    const follow = !t.following;
    const done = await store.act<unknown>(() => (follow ? gql(FollowThreadDocument, { threadId: t.id }) : gql(UnfollowThreadDocument, { threadId: t.id })));
    if (done && this.thread?.id === t.id) this.thread = { ...this.thread, following: follow };
  }
}

export const threadPanel = new ThreadPanel();
