import { describe, expect, it } from 'vitest';
import { filesOf, formatSize, isImage, MediaCache, pastedName, previewSize, retrying, upload, uploadError, uploadRequest, type XhrLike } from './media';

describe('uploadRequest', () => {
  it('names the file in the query, escaped, and sends its type and the token', () => {
    expect(uploadRequest({ name: 'a b&c.png', type: 'image/png' }, 'T')).toEqual({
      url: '/media/upload?filename=a%20b%26c.png',
      headers: { 'content-type': 'image/png', authorization: 'Bearer T' },
    });
  });
  it('falls back to octet-stream and a name, and sends no token when there is none', () => {
    expect(uploadRequest({ name: '', type: '' }, null)).toEqual({ url: '/media/upload?filename=file', headers: { 'content-type': 'application/octet-stream' } });
  });
});

describe('formatSize', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1 KB'],
    [1536, '1.5 KB'],
    [20 * 1024 + 300, '20 KB'],
    [5 * 1024 * 1024, '5 MB'],
    [3.25 * 1024 ** 3, '3.3 GB'],
  ])('%d bytes is %s', (n, s) => expect(formatSize(n)).toBe(s));
  it('says nothing for nonsense', () => expect(formatSize(-1)).toBe(''));
});

describe('previewSize', () => {
  it('keeps a small image as it is (never scaled up)', () => expect(previewSize(100, 50)).toEqual({ width: 100, height: 50 }));
  it('scales a wide image to 320 px wide', () => expect(previewSize(1600, 900)).toEqual({ width: 320, height: 180 }));
  it('scales a tall image to the height bound', () => expect(previewSize(500, 2000)).toEqual({ width: 80, height: 320 }));
  it('never goes below a pixel', () => expect(previewSize(10000, 1)).toEqual({ width: 320, height: 1 }));
  it('gives a placeholder square without dimensions', () => expect(previewSize(null, 10)).toEqual({ width: 200, height: 200 }));
});

describe('isImage', () => {
  it('is by content type', () => {
    expect(isImage('image/png')).toBe(true);
    expect(isImage('IMAGE/JPEG')).toBe(true);
    expect(isImage('application/pdf')).toBe(false);
  });
});

describe('uploadError', () => {
  it("is the server's message when it gave one (the 413 names the limit)", () => {
    const body = JSON.stringify({ errors: [{ message: 'The file is larger than the 25 MB limit.', extensions: { code: 'TOO_LARGE' } }] });
    expect(uploadError(413, body)).toBe('The file is larger than the 25 MB limit.');
  });
  it('says what the status means otherwise', () => {
    expect(uploadError(413, '')).toMatch(/too large/);
    expect(uploadError(415, '<html>')).toMatch(/type/);
    expect(uploadError(0, '')).toMatch(/reach the server/);
    expect(uploadError(500, '')).toBe('The upload failed (500).');
  });
});

class FakeXhr implements XhrLike {
  status = 0;
  responseText = '';
  opened: [string, string] | null = null;
  headers: Record<string, string> = {};
  sent: Blob | null = null;
  aborted = false;
  upload: XhrLike['upload'] = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;
  open(m: string, u: string) {
    this.opened = [m, u];
  }
  setRequestHeader(k: string, v: string) {
    this.headers[k] = v;
  }
  send(b: Blob) {
    this.sent = b;
  }
  abort() {
    this.aborted = true;
    this.onabort?.();
  }
  answer(status: number, body: unknown) {
    this.status = status;
    this.responseText = typeof body === 'string' ? body : JSON.stringify(body);
    this.onload?.();
  }
}

const file = () => Object.assign(new Blob(['png'], { type: 'image/png' }), { name: 'dot.png' });

describe('upload', () => {
  it('posts the file with its headers, reports progress and answers what was stored', async () => {
    const xhr = new FakeXhr();
    const progress: number[] = [];
    const u = upload(file(), 'T', (f) => progress.push(f), () => xhr);
    expect(xhr.opened).toEqual(['POST', '/media/upload?filename=dot.png']);
    expect(xhr.headers).toEqual({ 'content-type': 'image/png', authorization: 'Bearer T' });
    xhr.upload.onprogress?.({ loaded: 1, total: 4, lengthComputable: true });
    xhr.upload.onprogress?.({ loaded: 1, total: 0, lengthComputable: false });
    const stored = { id: 'm1', url: '/media/m1', size: 3, contentType: 'image/png', filename: 'dot.png', width: 1, height: 1 };
    xhr.answer(201, stored);
    await expect(u.done).resolves.toEqual(stored);
    expect(progress).toEqual([0.25, 1]);
  });
  it("rejects with the server's message", async () => {
    const xhr = new FakeXhr();
    const u = upload(file(), 'T', () => {}, () => xhr);
    xhr.answer(413, { errors: [{ message: 'Files may be at most 8 MB.', extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });
    await expect(u.done).rejects.toThrow('Files may be at most 8 MB.');
  });
  it('can be cancelled', async () => {
    const xhr = new FakeXhr();
    const u = upload(file(), null, () => {}, () => xhr);
    u.abort();
    expect(xhr.aborted).toBe(true);
    await expect(u.done).rejects.toThrow('cancelled');
  });
});

describe('filesOf and pastedName', () => {
  const f = new File(['x'], 'a.txt', { type: 'text/plain' });
  it('takes the files, or the file items, and nothing from text', () => {
    expect(filesOf({ files: [f] })).toEqual([f]);
    expect(filesOf({ files: [], items: [{ kind: 'string', getAsFile: () => null }, { kind: 'file', getAsFile: () => f }] })).toEqual([f]);
    expect(filesOf({ files: [], items: [{ kind: 'string', getAsFile: () => null }] })).toEqual([]);
    expect(filesOf(null)).toEqual([]);
  });
  it('names a pasted image by the time', () => {
    const at = new Date('2026-12-06T10:11:12Z');
    expect(pastedName({ name: 'image.png', type: 'image/png' }, at)).toBe('pasted-20261206-101112.png');
    expect(pastedName({ name: '', type: 'image/svg+xml' }, at)).toBe('pasted-20261206-101112.svg');
    expect(pastedName({ name: 'cat.jpg', type: 'image/jpeg' }, at)).toBe('cat.jpg');
  });
});

describe('MediaCache', () => {
  function setup(status = 200) {
    const calls: Array<[string, RequestInit]> = [];
    const revoked: string[] = [];
    let n = 0;
    const cache = new MediaCache(
      async (url, init) => {
        calls.push([url, init]);
        return { ok: status < 400, status, blob: async () => new Blob(['x']), text: async () => '' };
      },
      () => 'T',
      { create: () => `blob:${++n}`, revoke: (u) => revoked.push(u) },
    );
    return { cache, calls, revoked };
  }
  it('fetches a file once with the token and gives its object URL to every asker', async () => {
    const { cache, calls } = setup();
    const [a, b] = await Promise.all([cache.get('m1', '/media/m1'), cache.get('m1', '/media/m1')]);
    expect(a).toBe('blob:1');
    expect(b).toBe('blob:1');
    expect(await cache.get('m2')).toBe('blob:2');
    expect(calls).toEqual([
      ['/media/m1', { headers: { authorization: 'Bearer T' } }],
      ['/media/m2', { headers: { authorization: 'Bearer T' } }],
    ]);
  });
  it('revokes every URL it made on release, and fetches again after', async () => {
    const { cache, calls, revoked } = setup();
    await cache.get('m1');
    await cache.get('m2');
    cache.release();
    expect(revoked).toEqual(['blob:1', 'blob:2']);
    expect(cache.size).toBe(0);
    await cache.get('m1');
    expect(calls).toHaveLength(3);
  });
  it('forgets a failed read so it can be asked again', async () => {
    const { cache, calls } = setup(403);
    await expect(cache.get('m1')).rejects.toThrow(/may not/);
    await Promise.resolve();
    expect(cache.size).toBe(0);
    await expect(cache.get('m1')).rejects.toThrow();
    expect(calls).toHaveLength(2);
  });
});

describe('retrying', () => {
  it('tries again with growing pauses until it works', async () => {
    const waits: number[] = [];
    let n = 0;
    const r = await retrying(async () => (++n < 3 ? Promise.reject(new Error('not yet')) : 'ok'), 5, 100, async (ms) => void waits.push(ms));
    expect(r).toBe('ok');
    expect(waits).toEqual([100, 200]);
  });
  it('gives up after the tries with the last error', async () => {
    let n = 0;
    await expect(retrying(async () => Promise.reject(new Error(`no ${++n}`)), 3, 1, async () => {})).rejects.toThrow('no 3');
  });
});
