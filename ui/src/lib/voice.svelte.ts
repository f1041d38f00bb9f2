// The voice channel I am in: a ticket from the hub (`joinVoice`), then a LiveKit room for the
// audio. livekit-client is loaded only here, with a dynamic import, the first time someone
// joins: the first load of the app does not pay for it. Who is in each channel is the hub's
// roster (store.voiceRosters, from guild events), so it shows whether or not the voice server
// can be reached; this module only says how my own connection is going, in words.
import type { Room } from 'livekit-client';
import { gql } from './gql';
import {
  DisconnectVoiceMemberDocument,
  JoinVoiceDocument,
  LeaveVoiceDocument,
  MoveVoiceMemberDocument,
  ServerMuteMemberDocument,
  SetVoiceStateDocument,
  SetVoiceUserLimitDocument,
  type JoinVoiceMutation,
} from './generated';
import { store, type GuildEvent } from './state.svelte';
import {
  actionDone,
  connectFailure,
  disconnectedText,
  isUnavailable,
  joinBlock,
  joinRefusal,
  micFailure,
  movedOut,
  movedTo,
  serverMuteArgs,
  type VoiceAction,
  type VoiceParticipant,
  type VoiceStatus,
} from './voice';
import type { Channel } from './types';

export type Ticket = JoinVoiceMutation['joinVoice'];

class Voice {
  /** The voice channel I am in (or joining), and where it is, for the panel. */
  channelId = $state<string | null>(null);
  channelName = $state('');
  guildId = $state<string | null>(null);
  guildName = $state('');
  status = $state<VoiceStatus>('joining');
  /** Why I am not connected to the voice server, in words. */
  problem = $state<string | null>(null);
  /** Why the microphone is not sending, in words. */
  micProblem = $state<string | null>(null);
  /** My own mute and deafen (a moderator's are in the roster). */
  muted = $state(false);
  deafened = $state(false);
  /** User ids speaking now, from the voice server's active speakers. */
  speaking = $state<string[]>([]);
  /** The browser holds audio back until a click (autoplay rules). */
  audioBlocked = $state(false);
  /** The hub's refusal to let me into a channel, by channel id. */
  refusals = $state<Record<string, string>>({});
  /** The hub has no voice server (VOICE_UNAVAILABLE): Join stays off until a reload. */
  unavailable = $state(false);
  /** The roster entry whose menu is open. */
  menu = $state<{ channelId: string; userId: string } | null>(null);
  /** The last ticket the hub gave (what the room was joined with). */
  ticket: Ticket | null = null;

  #room: Room | null = null;
  /** Bumped by every join, leave and move: answers for an older one are dropped. */
  #gen = 0;
  #mutedBeforeDeafen = false;

  constructor() {
    store.onVoiceEvent((e) => this.#heard(e));
    store.onReset(() => this.#end());
  }

  /** My entry in the roster of the channel I am in. */
  get mine(): VoiceParticipant | undefined {
    const me = store.me?.id;
    return this.channelId && me ? store.roster(this.channelId).find((p) => p.user.id === me) : undefined;
  }

  get serverMuted(): boolean {
    return !!this.mine?.serverMuted;
  }

  get serverDeafened(): boolean {
    return !!this.mine?.serverDeafened;
  }

  /** Why I cannot join `channel`, in words, or null when I can try. */
  blockFor(channel: Channel): string | null {
    const list = store.roster(channel.id);
    const me = store.me?.id;
    return joinBlock({
      channel,
      count: list.length,
      inIt: list.some((p) => p.user.id === me) || this.channelId === channel.id,
      unavailable: this.unavailable,
      timedOutUntil: store.guild?.me?.timedOutUntil ?? null,
      now: Date.now(),
    });
  }

  /** Joins a voice channel (leaving the one I am in). */
  async join(channel: Channel): Promise<void> {
    if (this.channelId === channel.id && this.status !== 'failed') return;
    if (this.channelId && this.channelId !== channel.id) await this.leave();
    const { [channel.id]: _, ...rest } = this.refusals;
    this.refusals = rest;
    this.channelId = channel.id;
    this.channelName = channel.name;
    this.guildId = channel.guildId ?? null;
    this.guildName = store.guild?.name ?? '';
    await this.#start(channel.id);
  }

  /** Asks for a new ticket and connects again (after a failure). */
  async retry(): Promise<void> {
    if (this.channelId) await this.#start(this.channelId);
  }

  async leave(): Promise<void> {
    const id = this.channelId;
    if (!id) return;
    this.#gen++;
    this.#teardown();
    this.#clear();
    await gql(LeaveVoiceDocument, { channelId: id }).catch((e) => store.say(e));
  }

  toggleMute(): void {
    if (this.muted && this.deafened) {
      // Speaking again means hearing again (as Discord does it).
      this.deafened = false;
      this.muted = false;
    } else this.muted = !this.muted;
    this.#changed();
  }

  toggleDeafen(): void {
    if (this.deafened) {
      this.deafened = false;
      this.muted = this.#mutedBeforeDeafen;
    } else {
      this.#mutedBeforeDeafen = this.muted;
      this.deafened = true;
      this.muted = true;
    }
    this.#changed();
  }

  /** Plays the room's audio after the browser held it back (needs a click). */
  async startAudio(): Promise<void> {
    await this.#room?.startAudio().catch(() => {});
    this.audioBlocked = !!this.#room && !this.#room.canPlaybackAudio;
  }

  // ---- moderators ----

  async moderate(action: VoiceAction, channelId: string, target: VoiceParticipant, reason: string, toChannel?: Channel): Promise<boolean> {
    const v = { channelId, userId: target.user.id, reason };
    let done: unknown;
    if (action === 'disconnect') done = await store.act(() => gql(DisconnectVoiceMemberDocument, v));
    else if (action === 'move') {
      if (!toChannel) return false;
      done = await store.act(() => gql(MoveVoiceMemberDocument, { ...v, toChannelId: toChannel.id }));
    } else done = await store.act(() => gql(ServerMuteMemberDocument, { ...v, ...serverMuteArgs(action, target) }));
    if (!done) return false;
    store.say(actionDone(action, target.user.handle, toChannel?.name));
    return true;
  }

  async setUserLimit(channelId: string, limit: number): Promise<boolean> {
    const d = await store.act(() => gql(SetVoiceUserLimitDocument, { channelId, limit }));
    if (!d) return false;
    const c = store.guild?.channels.find((x) => x.id === channelId);
    if (c) c.userLimit = d.setVoiceUserLimit.userLimit;
    return true;
  }

  // ---- the connection ----

  async #start(channelId: string): Promise<void> {
    const gen = ++this.#gen;
    this.#teardown();
    this.status = 'joining';
    this.problem = null;
    this.micProblem = null;
    let ticket: Ticket;
    try {
      ticket = (await gql(JoinVoiceDocument, { channelId })).joinVoice;
    } catch (e) {
      if (gen !== this.#gen) return;
      this.refusals = { ...this.refusals, [channelId]: joinRefusal(e) };
      if (isUnavailable(e)) this.unavailable = true;
      this.#clear();
      return;
    }
    if (gen !== this.#gen) return;
    this.ticket = ticket;
    await this.#connect(gen, ticket);
  }

  async #connect(gen: number, ticket: Ticket): Promise<void> {
    this.status = 'connecting';
    let lk: typeof import('livekit-client');
    try {
      lk = await import('livekit-client');
    } catch {
      if (gen !== this.#gen) return;
      this.status = 'failed';
      this.problem = 'The voice part of the app could not be loaded. Reload the page, then try again.';
      return;
    }
    if (gen !== this.#gen) return;
    const room = new lk.Room({ adaptiveStream: true, dynacast: true });
    this.#room = room;
    let up = false;
    const current = () => this.#room === room && gen === this.#gen;
    room
      .on(lk.RoomEvent.ActiveSpeakersChanged, (speakers) => {
        if (current()) this.speaking = speakers.map((s) => s.identity);
      })
      .on(lk.RoomEvent.TrackSubscribed, (track, _publication, participant) => {
        if (track.kind !== lk.Track.Kind.Audio) return;
        const el = track.attach();
        el.dataset.voice = participant.identity;
        document.body.append(el);
        participant.setVolume(this.#hearing() ? 1 : 0);
      })
      .on(lk.RoomEvent.TrackUnsubscribed, (track) => {
        for (const el of track.detach()) el.remove();
      })
      .on(lk.RoomEvent.Reconnecting, () => {
        if (current()) this.status = 'reconnecting';
      })
      .on(lk.RoomEvent.Reconnected, () => {
        if (current()) this.status = 'connected';
      })
      .on(lk.RoomEvent.AudioPlaybackStatusChanged, () => {
        if (current()) this.audioBlocked = !room.canPlaybackAudio;
      })
      .on(lk.RoomEvent.MediaDevicesError, (e) => {
        if (current()) this.micProblem = micFailure(e);
      })
      .on(lk.RoomEvent.Moved, (name) => {
        // A moderator moved me: the voice server moved the connection to the room `name`,
        // which is the other channel's id.
        if (current()) this.#movedTo(name);
      })
      .on(lk.RoomEvent.Disconnected, (reason) => {
        // Before the connection was up, connect() itself says what went wrong.
        if (!up || !current()) return;
        this.#teardown();
        const text = disconnectedText(reason);
        if (text) {
          this.status = 'failed';
          this.problem = text;
        }
      });
    try {
      await room.connect(ticket.url, ticket.token, { autoSubscribe: true });
    } catch (e) {
      if (!current()) return;
      this.#teardown();
      const text = connectFailure(e, ticket.url);
      if (text) {
        this.status = 'failed';
        this.problem = text;
      }
      return;
    }
    if (!current()) {
      void room.disconnect();
      return;
    }
    up = true;
    this.status = 'connected';
    this.audioBlocked = !room.canPlaybackAudio;
    await this.#applyMic();
    this.#applyVolumes();
  }

  #hearing(): boolean {
    return !this.deafened && !this.serverDeafened;
  }

  async #applyMic(): Promise<void> {
    const room = this.#room;
    if (!room || this.status !== 'connected') return;
    const on = !this.muted && !this.serverMuted;
    try {
      await room.localParticipant.setMicrophoneEnabled(on);
      if (on) this.micProblem = null;
    } catch (e) {
      if (this.#room !== room) return;
      this.micProblem = micFailure(e);
      // Others see what is true: nobody hears me.
      this.muted = true;
      void this.#sendState();
    }
  }

  #applyVolumes(): void {
    const v = this.#hearing() ? 1 : 0;
    for (const p of this.#room?.remoteParticipants.values() ?? []) p.setVolume(v);
  }

  #changed(): void {
    void this.#applyMic();
    this.#applyVolumes();
    void this.#sendState();
  }

  /**
   * Tells the hub my mute and deafen, so others see them; my roster entry shows them at once.
   * Only once the roster lists me (the voice server said I joined): until then the hub has no
   * seat to put them on, and they go when it does (`voice.joined`).
   */
  async #sendState(): Promise<void> {
    const channelId = this.channelId;
    if (!channelId || !this.mine) return;
    store.voiceSelf(channelId, this.muted, this.deafened);
    await gql(SetVoiceStateDocument, { channelId, muted: this.muted, deafened: this.deafened }).catch((e) => store.say(e));
  }

  /** The voice server moved my connection to the channel `to`. */
  #movedTo(to: string): void {
    if (to === this.channelId) return;
    const c = store.guild?.channels.find((x) => x.id === to);
    this.channelId = to;
    this.channelName = c?.name ?? 'another channel';
    store.say(`A moderator moved you to ${this.channelName}.`);
  }

  /** A voice event about me: a moderator muted, deafened, moved or disconnected me. */
  #heard(e: GuildEvent): void {
    const me = store.me?.id;
    if (!me || !this.channelId || e.target?.id !== me) return;
    const why = e.reason ? `: ${e.reason}` : '';
    if (e.kind === 'voice.disconnected' && (!e.channelId || e.channelId === this.channelId)) {
      this.#gen++;
      this.#teardown();
      this.#clear();
      store.say(`A moderator disconnected you from voice${why}.`);
      return;
    }
    if (e.kind === 'voice.joined' && e.channelId === this.channelId && (this.muted || this.deafened)) {
      // Seated at last: my mute and deafen, set before, go to the hub now.
      void this.#sendState();
      return;
    }
    if (movedOut(e, me, this.channelId)) {
      // Connected, the voice server moves the connection itself (RoomEvent.Moved says where).
      if (this.#room && this.status !== 'failed') return;
      // Not connected: join where I was moved, if the rosters know; else I am out.
      const to = movedTo(e, me, this.channelId, store.voiceRosters);
      if (to) {
        this.#movedTo(to);
        void this.#start(to);
      } else {
        const from = this.channelName;
        this.#gen++;
        this.#teardown();
        this.#clear();
        store.say(`A moderator moved you out of ${from}${why}.`);
      }
      return;
    }
    if (e.kind === 'voice.server_muted') {
      void this.#applyMic();
      this.#applyVolumes();
      const m = this.mine;
      if (m) store.say(m.serverDeafened ? 'A moderator deafened you.' : m.serverMuted ? 'A moderator muted you.' : 'A moderator let you speak again.');
    }
  }

  #teardown(): void {
    const room = this.#room;
    this.#room = null;
    if (room) {
      room.removeAllListeners();
      for (const p of room.remoteParticipants.values()) for (const t of p.audioTrackPublications.values()) for (const el of t.track?.detach() ?? []) el.remove();
      void room.disconnect();
    }
    this.speaking = [];
    this.audioBlocked = false;
  }

  #clear(): void {
    this.channelId = null;
    this.channelName = '';
    this.guildId = null;
    this.guildName = '';
    this.status = 'joining';
    this.problem = null;
    this.micProblem = null;
    this.ticket = null;
  }

  /** The session is over: drop the connection without telling the hub (it knows). */
  #end(): void {
    this.#gen++;
    this.#teardown();
    this.#clear();
    this.refusals = {};
    this.unavailable = false;
    this.menu = null;
  }
}

export const voice = new Voice();
