// The files a composer is about to send: each uploads as soon as it is picked, dropped or
// pasted, shows its progress, and can be taken off (cancelling its upload). Sending takes
// the ids of those uploaded. One per composer (the channel's, the open thread's).
import { getToken } from './gql';
import { MediaCache, upload, type Uploaded } from './media';

/** Files read with the bearer token, as object URLs: released on logout. */
export const media = new MediaCache((url, init) => fetch(url, init), getToken);

/** At most this many files go with one message (the server's limit). */
export const MAX_FILES = 10;

export interface Pending {
  key: number;
  name: string;
  size: number;
  type: string;
  /** 0–1 while uploading. */
  progress: number;
  done: Uploaded | null;
  error: string | null;
  abort: () => void;
}

let nextKey = 1;

export class Uploads {
  items = $state<Pending[]>([]);

  /** Whether any file is still on its way up. */
  busy = $derived(this.items.some((p) => !p.done && !p.error));
  /** The ids to send with the message. */
  ids = $derived(this.items.filter((p) => p.done).map((p) => p.done!.id));

  /** Starts uploading `files`; those past the limit are refused with a sentence. */
  add(files: File[], say: (text: string) => void): void {
    const room = MAX_FILES - this.items.length;
    if (files.length > room) say(`At most ${MAX_FILES} files go with one message.`);
    for (const file of files.slice(0, Math.max(0, room))) {
      const key = nextKey++;
      const u = upload(file, getToken(), (f) => this.#update(key, { progress: f }));
      this.items.push({ key, name: file.name, size: file.size, type: file.type, progress: 0, done: null, error: null, abort: u.abort });
      u.done.then(
        (done) => this.#update(key, { done, progress: 1 }),
        (e: Error) => {
          if (e.message !== 'cancelled') this.#update(key, { error: e.message });
        },
      );
    }
  }

  #update(key: number, change: Partial<Pending>): void {
    const i = this.items.findIndex((p) => p.key === key);
    if (i >= 0) this.items[i] = { ...this.items[i], ...change };
  }

  remove(key: number): void {
    const p = this.items.find((x) => x.key === key);
    if (p && !p.done && !p.error) p.abort();
    this.items = this.items.filter((x) => x.key !== key);
  }

  /** After sending: the files went with the message. */
  clear(): void {
    for (const p of this.items) if (!p.done && !p.error) p.abort();
    this.items = [];
  }
}
