// Files: uploading them (`POST /media/upload`, with progress), saying how big they are,
// sizing an image's preview, and reading them back. `GET /media/{id}` needs the bearer token,
// so an `<img src>` cannot load it: `MediaCache` fetches each file once with the token and
// keeps an object URL per id until it is let go. Pure or injected, so unit-tested.

/** What the server says about a stored upload (also `Message.attachments`). */
export interface Uploaded {
  id: string;
  url: string;
  size: number;
  contentType: string;
  filename: string;
  width: number | null;
  height: number | null;
  /** A small JPEG of a JPEG or PNG image, drawn inline; the lightbox loads `url`. */
  previewUrl?: string | null;
}

/** The widest an inline preview is drawn, and the tallest. */
export const PREVIEW_MAX_W = 320;
export const PREVIEW_MAX_H = 320;

/** The upload request for a file: where it goes and the headers it needs. */
export function uploadRequest(file: { name: string; type: string }, token: string | null): { url: string; headers: Record<string, string> } {
  const headers: Record<string, string> = { 'content-type': file.type || 'application/octet-stream' };
  if (token) headers.authorization = `Bearer ${token}`;
  return { url: `/media/upload?filename=${encodeURIComponent(file.name || 'file')}`, headers };
}

/** A size in words: bytes, KB, MB, GB (powers of 1024, one decimal below 10). */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? Math.round(v * 10) / 10 : Math.round(v)} ${units[i]}`;
}

/** Whether a file shows inline as an image. */
export function isImage(contentType: string): boolean {
  return contentType.toLowerCase().startsWith('image/');
}

/**
 * The size an image's preview is drawn at: its own, scaled down (never up) to fit
 * `maxW`×`maxH`, at least 1 px each way. Unknown dimensions get a square placeholder.
 */
export function previewSize(width: number | null | undefined, height: number | null | undefined, maxW = PREVIEW_MAX_W, maxH = PREVIEW_MAX_H): { width: number; height: number } {
  if (!width || !height || width <= 0 || height <= 0) return { width: Math.min(maxW, maxH, 200), height: Math.min(maxW, maxH, 200) };
  const scale = Math.min(1, maxW / width, maxH / height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** The server's refusal of an upload in words: its own message when it gave one. */
export function uploadError(status: number, body: string): string {
  try {
    const parsed = JSON.parse(body) as { errors?: Array<{ message?: string }> };
    const m = parsed.errors?.[0]?.message;
    if (m) return m;
  } catch {
    // Not JSON: say what the status means.
  }
  if (status === 0) return "Can't reach the server. Check your connection and try again.";
  if (status === 413) return 'The file is too large.';
  if (status === 415) return 'The file is not of the type it says it is.';
  if (status === 401) return 'Your session has ended. Please log in again.';
  if (status === 403) return 'You may not upload files here.';
  if (status === 429) return 'Too many uploads at once. Wait a moment and try again.';
  return `The upload failed (${status}).`;
}

/** The part of XMLHttpRequest an upload uses (a fake one in tests). */
export interface XhrLike {
  open(method: string, url: string): void;
  setRequestHeader(name: string, value: string): void;
  send(body: Blob): void;
  abort(): void;
  status: number;
  responseText: string;
  upload: { onprogress: ((e: { loaded: number; total: number; lengthComputable: boolean }) => void) | null };
  onload: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
}

export class UploadError extends Error {}

/**
 * Uploads `file`, telling `onProgress` the fraction sent (0–1). XMLHttpRequest rather than
 * fetch, for the progress. `abort()` cancels it (the promise then rejects with "cancelled").
 */
export function upload(
  file: Blob & { name: string },
  token: string | null,
  onProgress: (fraction: number) => void,
  makeXhr: () => XhrLike = () => new XMLHttpRequest() as unknown as XhrLike,
): { done: Promise<Uploaded>; abort: () => void } {
  const xhr = makeXhr();
  const req = uploadRequest(file, token);
  const done = new Promise<Uploaded>((ok, fail) => {
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(Math.min(1, e.loaded / e.total));
    };
    xhr.onload = () => {
      if (xhr.status === 200 || xhr.status === 201) {
        try {
          onProgress(1);
          return ok(JSON.parse(xhr.responseText) as Uploaded);
        } catch {
          return fail(new UploadError('The server answered without a readable body.'));
        }
      }
      fail(new UploadError(uploadError(xhr.status, xhr.responseText)));
    };
    xhr.onerror = () => fail(new UploadError(uploadError(0, '')));
    xhr.onabort = () => fail(new UploadError('cancelled'));
  });
  xhr.open('POST', req.url);
  for (const [k, v] of Object.entries(req.headers)) xhr.setRequestHeader(k, v);
  xhr.send(file);
  return { done, abort: () => xhr.abort() };
}

/** The files a paste or a drop carries (none for plain text). */
export function filesOf(data: { files?: ArrayLike<File> | null; items?: ArrayLike<{ kind: string; getAsFile(): File | null }> | null } | null): File[] {
  if (!data) return [];
  const files = Array.from(data.files ?? []);
  if (files.length) return files;
  return Array.from(data.items ?? [])
    .filter((i) => i.kind === 'file')
    .map((i) => i.getAsFile())
    .filter((f): f is File => !!f);
}

/** A name for a pasted image, which comes without one (or as "image.png"). */
export function pastedName(file: { name: string; type: string }, now: Date): string {
  if (file.name && file.name !== 'image.png') return file.name;
  const ext = file.type.split('/')[1]?.split('+')[0] || 'bin';
  const stamp = now.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
  return `pasted-${stamp}.${ext}`;
}

/**
 * Object URLs of files read with the bearer token, one per id, each fetched once (concurrent
 * asks share the fetch). `release()` revokes them all: on logout or teardown.
 */
export class MediaCache {
  #urls = new Map<string, Promise<string>>();
  #made: string[] = [];
  constructor(
    private readonly fetcher: (url: string, init: RequestInit) => Promise<{ ok: boolean; status: number; blob(): Promise<Blob>; text(): Promise<string> }>,
    private readonly token: () => string | null,
    private readonly objectUrls: { create(b: Blob): string; revoke(u: string): void } = {
      create: (b) => URL.createObjectURL(b),
      revoke: (u) => URL.revokeObjectURL(u),
    },
  ) {}

  /** The file's bytes, as an object URL. A failed read is forgotten, so it can be asked again. */
  get(id: string, url = `/media/${encodeURIComponent(id)}`): Promise<string> {
    let p = this.#urls.get(id);
    if (!p) {
      p = this.#load(url);
      this.#urls.set(id, p);
      p.catch(() => {
        if (this.#urls.get(id) === p) this.#urls.delete(id);
      });
    }
    return p;
  }

  async #load(url: string): Promise<string> {
    const t = this.token();
    const res = await this.fetcher(url, { headers: t ? { authorization: `Bearer ${t}` } : {} });
    if (!res.ok) throw new UploadError(uploadError(res.status, await res.text().catch(() => '')));
    const made = this.objectUrls.create(await res.blob());
    this.#made.push(made);
    return made;
  }

  /** How many files are held. */
  get size(): number {
    return this.#urls.size;
  }

  release(): void {
    for (const u of this.#made) this.objectUrls.revoke(u);
    this.#made = [];
    this.#urls.clear();
  }
}

/**
 * `f()`, tried again after 250 ms, 500 ms, 1 s… up to `tries` times in all when it fails: a
 * file of a post heard live may be refused until the server's read model has caught up.
 */
export async function retrying<T>(f: () => Promise<T>, tries = 5, firstDelayMs = 250, sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await f();
    } catch (e) {
      if (i + 1 >= tries) throw e;
      await sleep(firstDelayMs * 2 ** i);
    }
  }
}
