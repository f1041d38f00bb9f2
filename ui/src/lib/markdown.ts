// A small, safe Markdown renderer for chat messages.
//
// The source is parsed into a tiny tree and every character of the message is escaped on the
// way out, so the only tags in the result are the renderer's own: a, strong, em, del, code,
// pre, span (spoilers and mentions), br and blockquote. No regular expression here can
// backtrack catastrophically, and the parser is linear-ish (each character is looked at a
// bounded number of times), so a hostile 10k-character message renders instantly.
//
// Supported: **bold**, *italic* and _italic_, ~~strike~~, `code`, ```fenced code```,
// [text](url), bare http(s):// URLs, ||spoilers||, @handle and @handle:server mentions,
// "> quote" lines, newlines, and backslash escapes (\*not italic\*). Unclosed markers stay
// literal.

export interface MarkdownOptions {
  /** The viewer's handle: mentions of it get the class `mention me`. */
  me?: string;
}

type Inline =
  | { t: 'text'; s: string }
  | { t: 'br' }
  | { t: 'code'; s: string }
  | { t: 'link'; href: string; children: Inline[] }
  | { t: 'mention'; text: string; me: boolean }
  | { t: 'strong' | 'em' | 'del' | 'spoiler'; children: Inline[] };

type Block =
  | { t: 'para'; children: Inline[] }
  | { t: 'quote'; children: Inline[] }
  | { t: 'pre'; code: string; lang: string };

type DelimKind = '*' | '_' | '~' | '|';

interface Frame {
  kind: DelimKind | '';
  /** Remaining marker length: characters for `*`/`_`, pairs for `~~`/`||`. */
  len: number;
  children: Inline[];
}

/** Deepest nesting of open formatting markers; further openers are literal text. */
const MAX_DEPTH = 16;
const MAX_LINK_TEXT = 1000;
const MAX_LINK_URL = 2048;
const ESCAPABLE = '\\`*_~|[]()>@<#:.-!';

const SPOILER_OPEN = '<span class="spoiler" tabindex="0" role="button" aria-label="spoiler">';
const LINK_ATTRS = '" target="_blank" rel="noopener noreferrer nofollow">';

// ---------------------------------------------------------------------------------------------
// Public API

/** Renders a chat message to an HTML string that is safe to insert with `{@html}`. */
export function renderMarkdown(src: string, opts?: MarkdownOptions): string {
  const text = typeof src === 'string' ? src : String(src ?? '');
  try {
    const me = normaliseMe(opts?.me);
    const out: string[] = [];
    for (const b of parseBlocks(text, me)) renderBlockHtml(b, out);
    return out.join('');
  } catch {
    // Never throws: fall back to the message as escaped text.
    return escapeHtml(text).replace(/\n/g, '<br>');
  }
}

/**
 * The message with its Markdown stripped, as plain (unescaped) text for notifications, aria
 * labels and reply previews. Spoiler contents are hidden as "[spoiler]".
 */
export function plainText(src: string): string {
  const text = typeof src === 'string' ? src : String(src ?? '');
  try {
    const parts: string[] = [];
    for (const b of parseBlocks(text, '')) {
      const out: string[] = [];
      if (b.t === 'pre') out.push(b.code);
      else renderInlineText(b.children, out);
      parts.push(out.join(''));
    }
    return parts.join('\n');
  } catch {
    return text;
  }
}

/** Escapes `& < > " '` for use in HTML text and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

// ---------------------------------------------------------------------------------------------
// Links

const NAMED_ENTITIES: Record<string, string> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  colon: ':',
  tab: '\t',
  newline: '\n',
  nbsp: '\u00a0',
  lpar: '(',
  rpar: ')',
  sol: '/',
  bsol: '\\',
  period: '.',
  comma: ',',
  excl: '!',
  num: '#',
  percnt: '%',
  semi: ';',
  equals: '=',
  quest: '?',
  commat: '@',
};

function decodeEntities(s: string): string {
  return s.replace(
    /&(#[xX][0-9a-fA-F]{1,8}|#[0-9]{1,10}|[a-zA-Z][a-zA-Z0-9]{1,31});?/g,
    (whole, body: string) => {
      if (body[0] === '#') {
        const code =
          body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
        if (!Number.isFinite(code) || code < 0 || code > 0x10ffff) return '\ufffd';
        return String.fromCodePoint(code);
      }
      return NAMED_ENTITIES[body.toLowerCase()] ?? whole;
    },
  );
}

// Whitespace, C0/C1 controls and invisible characters that browsers ignore or strip in URLs.
const INVISIBLE = /[\u0000-\u0020\u007f-\u00a0\u00ad\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff]/g;
const HAS_INVISIBLE = /[\u0000-\u0020\u007f-\u00a0\u00ad\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff]/;
const SAFE_SCHEME = /^(https?:\/\/|mailto:)/i;

/**
 * Returns the href to use for a link target, or null when it is not an http:, https: or
 * mailto: URL. The check is made after decoding HTML entities and stripping whitespace and
 * control characters, case-insensitively, so `java\tscript:` and `&#106;avascript:` are
 * refused. A target containing whitespace or control characters is refused outright.
 */
export function safeHref(raw: string): string | null {
  const url = raw.trim();
  if (url === '' || HAS_INVISIBLE.test(url)) return null;
  let decoded = url;
  for (let k = 0; k < 3; k++) {
    const next = decodeEntities(decoded);
    if (next === decoded) break;
    decoded = next;
  }
  decoded = decoded.replace(INVISIBLE, '').toLowerCase();
  if (!SAFE_SCHEME.test(decoded)) return null;
  const m = SAFE_SCHEME.exec(url);
  if (!m) return null;
  const scheme = m[1].toLowerCase();
  const rest = url.slice(scheme.length);
  if (rest === '') return null;
  return scheme + rest;
}

// ---------------------------------------------------------------------------------------------
// Blocks: fenced code, quotes, paragraphs

function normaliseMe(me: string | undefined): string {
  if (!me) return '';
  let m = me.trim().toLowerCase();
  if (m.startsWith('@')) m = m.slice(1);
  const colon = m.indexOf(':');
  return colon >= 0 ? m.slice(0, colon) : m;
}

function parseBlocks(src: string, me: string): Block[] {
  const blocks: Block[] = [];
  let segStart = 0;
  let pos = 0;
  for (;;) {
    const open = src.indexOf('```', pos);
    if (open < 0) break;
    const close = src.indexOf('```', open + 3);
    if (close < 0) break;
    const code = fencedBody(src.slice(open + 3, close));
    if (code === null) {
      // An empty fence stays literal; look for the next one after it.
      pos = close + 3;
      continue;
    }
    const textEnd = open > segStart && src[open - 1] === '\n' ? open - 1 : open;
    textBlocks(src, segStart, textEnd, me, blocks);
    blocks.push({ t: 'pre', code: code.code, lang: code.lang });
    pos = segStart = src[close + 3] === '\n' ? close + 4 : close + 3;
  }
  textBlocks(src, segStart, src.length, me, blocks);
  return blocks;
}

function fencedBody(body: string): { code: string; lang: string } | null {
  let code = body;
  let lang = '';
  const nl = body.indexOf('\n');
  if (nl >= 0) {
    const first = body.slice(0, nl);
    if (/^[A-Za-z0-9_+#.-]*$/.test(first) && (first === '' || body.slice(nl + 1).trim() !== '')) {
      lang = first.toLowerCase();
      code = body.slice(nl + 1);
    }
  }
  if (code.endsWith('\n')) code = code.slice(0, -1);
  if (code === '') return null;
  return { code, lang: /^[a-z0-9]{1,20}$/.test(lang) ? lang : '' };
}

function textBlocks(src: string, start: number, end: number, me: string, blocks: Block[]): void {
  if (end <= start) return;
  const atLineStart = start === 0 || src[start - 1] === '\n';
  const lines = src.slice(start, end).split('\n');
  let group: string[] = [];
  let groupIsQuote = false;
  const flush = () => {
    if (group.length === 0) return;
    const text = group.join('\n');
    if (groupIsQuote) blocks.push({ t: 'quote', children: parseInline(text, me, false) });
    else if (text !== '') blocks.push({ t: 'para', children: parseInline(text, me, false) });
    group = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const lineStart = i > 0 || atLineStart;
    let quoted: string | null = null;
    if (lineStart) {
      if (line.startsWith('> ')) quoted = line.slice(2);
      else if (line === '>' && groupIsQuote && group.length > 0) quoted = '';
    }
    const isQuote = quoted !== null;
    if (isQuote !== groupIsQuote) {
      flush();
      groupIsQuote = isQuote;
    }
    group.push(isQuote ? (quoted as string) : line);
  }
  flush();
}

// ---------------------------------------------------------------------------------------------
// Inline parsing with a delimiter stack

function isWS(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\u00a0' || c === '\f' || c === '\v';
}

const ALNUM = /^[\p{L}\p{N}]$/u;
const URL_BODY_START = /^[\p{L}\p{N}\[]/u;

function isAlnum(c: string): boolean {
  return ALNUM.test(c);
}

function isHandleChar(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c === '.' || c === '_' || c === '-';
}

function isServerChar(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c === '.' || c === '-';
}

function markerText(kind: DelimKind | '', len: number): string {
  if (kind === '~' || kind === '|') return (kind + kind).repeat(len);
  return kind.repeat(len);
}

/**
 * Parses inline Markdown. `nested` is true inside link text: no links, autolinks or mentions
 * there (a link cannot contain a link).
 */
function parseInline(s: string, me: string, nested: boolean): Inline[] {
  const n = s.length;
  const root: Frame = { kind: '', len: 0, children: [] };
  const stack: Frame[] = [root];
  const openCount: Record<DelimKind, number> = { '*': 0, _: 0, '~': 0, '|': 0 };
  const failedTicks = new Set<number>();
  let buf = '';
  // Cached result of the last search for ']' (first ']' at or after `bracketFrom`).
  let bracketFrom = -1;
  let bracketAt = -1;
  let noParen = false;

  const top = () => stack[stack.length - 1];
  const flush = () => {
    if (buf !== '') {
      top().children.push({ t: 'text', s: buf });
      buf = '';
    }
  };
  const emit = (node: Inline) => {
    flush();
    top().children.push(node);
  };
  const collapseTop = () => {
    const f = stack.pop() as Frame;
    if (f.kind !== '') openCount[f.kind]--;
    const parent = top().children;
    parent.push({ t: 'text', s: markerText(f.kind, f.len) });
    for (const ch of f.children) parent.push(ch);
  };
  const delim = (kind: DelimKind, len: number, canOpen: boolean, canClose: boolean) => {
    if (canClose && openCount[kind] > 0) {
      flush();
      while (len > 0 && openCount[kind] > 0) {
        let j = stack.length - 1;
        while (stack[j].kind !== kind) j--;
        if (j === stack.length - 1 && stack[j].children.length === 0) break; // nothing to format
        while (stack.length - 1 > j) collapseTop();
        const f = stack[j];
        const use = (kind === '*' || kind === '_') && len >= 2 && f.len >= 2 ? 2 : 1;
        const tag = kind === '~' ? 'del' : kind === '|' ? 'spoiler' : use === 2 ? 'strong' : 'em';
        const el: Inline = { t: tag, children: f.children };
        f.len -= use;
        len -= use;
        if (f.len > 0) {
          f.children = [el];
        } else {
          stack.pop();
          openCount[kind]--;
          top().children.push(el);
        }
      }
    }
    if (len > 0) {
      if (canOpen && stack.length <= MAX_DEPTH) {
        flush();
        stack.push({ kind, len, children: [] });
        openCount[kind]++;
      } else {
        buf += markerText(kind, len);
      }
    }
  };

  let i = 0;
  while (i < n) {
    const c = s[i];
    switch (c) {
      case '\\': {
        const next = s[i + 1];
        if (next !== undefined && ESCAPABLE.includes(next)) {
          buf += next;
          i += 2;
        } else {
          buf += c;
          i++;
        }
        continue;
      }
      case '\n':
        emit({ t: 'br' });
        i++;
        continue;
      case '`': {
        let j = i;
        while (j < n && s[j] === '`') j++;
        const len = j - i;
        if (!failedTicks.has(len)) {
          const end = findTickRun(s, j, len);
          if (end >= 0) {
            emit({ t: 'code', s: s.slice(j, end) });
            i = end + len;
            continue;
          }
          failedTicks.add(len);
        }
        buf += s.slice(i, j);
        i = j;
        continue;
      }
      case '*':
      case '_': {
        let j = i;
        while (j < n && s[j] === c) j++;
        const len = j - i;
        if (len > 3) {
          buf += s.slice(i, j);
          i = j;
          continue;
        }
        const prev = i > 0 ? s[i - 1] : '';
        const next = j < n ? s[j] : '';
        let canOpen = next !== '' && !isWS(next);
        let canClose = prev !== '' && !isWS(prev);
        if (c === '_') {
          // snake_case_words are not italic
          canOpen = canOpen && (prev === '' || !isAlnum(prev));
          canClose = canClose && (next === '' || !isAlnum(next));
        }
        delim(c, len, canOpen, canClose);
        i = j;
        continue;
      }
      case '~':
      case '|': {
        if (s[i + 1] !== c) {
          buf += c;
          i++;
          continue;
        }
        const prev = i > 0 ? s[i - 1] : '';
        const next = i + 2 < n ? s[i + 2] : '';
        const wsBefore = prev === '' || isWS(prev);
        const wsAfter = next === '' || isWS(next);
        // `x ||y` only opens, `x|| y` only closes; `|| x ||` and `a||b` may do either.
        const canOpen = next !== '' && !(wsAfter && !wsBefore);
        const canClose = prev !== '' && !(wsBefore && !wsAfter);
        delim(c, 1, canOpen, canClose);
        i += 2;
        continue;
      }
      case '[': {
        if (!nested) {
          // Find the first ']' after i (cached, so runs of '[' stay linear).
          if (!(bracketFrom >= 0 && bracketFrom <= i + 1 && (bracketAt < 0 || bracketAt >= i + 1))) {
            bracketFrom = i + 1;
            bracketAt = s.indexOf(']', i + 1);
          }
          const close = bracketAt;
          if (close > i + 1 && close - i - 1 <= MAX_LINK_TEXT && s[close + 1] === '(' && !noParen) {
            const urlEnd = findParenClose(s, close + 2);
            if (urlEnd === -2) noParen = true;
            if (urlEnd >= 0) {
              const label = s.slice(i + 1, close);
              const href = label.trim() === '' ? null : safeHref(s.slice(close + 2, urlEnd));
              if (href !== null) {
                emit({ t: 'link', href, children: parseInline(label, me, true) });
              } else {
                buf += s.slice(i, urlEnd + 1); // unsafe or empty: the whole thing as plain text
              }
              i = urlEnd + 1;
              continue;
            }
          }
        }
        buf += c;
        i++;
        continue;
      }
      case '@': {
        if (!nested) {
          const prev = i > 0 ? s[i - 1] : '';
          if (prev === '' || !(isHandleChar(prev) || isAlnum(prev))) {
            const m = matchMention(s, i);
            if (m !== null) {
              emit({ t: 'mention', text: s.slice(i, m.end), me: me !== '' && m.handle === me });
              i = m.end;
              continue;
            }
          }
        }
        buf += c;
        i++;
        continue;
      }
      case 'h':
      case 'H': {
        if (!nested && (i === 0 || !isAlnum(s[i - 1]))) {
          const m = matchAutolink(s, i);
          if (m !== null) {
            emit({ t: 'link', href: m.href, children: [{ t: 'text', s: s.slice(i, m.end) }] });
            i = m.end;
            continue;
          }
        }
        buf += c;
        i++;
        continue;
      }
      default:
        buf += c;
        i++;
    }
  }
  flush();
  while (stack.length > 1) collapseTop();
  return root.children;
}

/** Index of the next run of exactly `len` backticks at or after `from`, or -1. */
function findTickRun(s: string, from: number, len: number): number {
  let k = from;
  for (;;) {
    const idx = s.indexOf('`', k);
    if (idx < 0) return -1;
    let m = idx;
    while (m < s.length && s[m] === '`') m++;
    if (m - idx === len) return idx;
    k = m;
  }
}

/**
 * Index of the ')' closing a link target that starts at `from` (balanced parentheses allowed),
 * -1 when there is none within reach, -2 when there is no ')' anywhere after `from`.
 */
function findParenClose(s: string, from: number): number {
  if (s.indexOf(')', from) < 0) return -2;
  let depth = 0;
  const limit = Math.min(s.length, from + MAX_LINK_URL);
  for (let k = from; k < limit; k++) {
    const c = s[k];
    if (c === '(') depth++;
    else if (c === ')') {
      if (depth === 0) return k;
      depth--;
    } else if (c === '\n') return -1;
  }
  return -1;
}

function matchMention(s: string, at: number): { end: number; handle: string } | null {
  let j = at + 1;
  while (j < s.length && isHandleChar(s[j])) j++;
  while (j > at + 1 && s[j - 1] === '.') j--; // "@bob." ends a sentence
  if (j === at + 1) return null;
  const handle = s.slice(at + 1, j);
  let end = j;
  if (s[j] === ':' && j + 1 < s.length && isServerChar(s[j + 1])) {
    let k = j + 1;
    while (k < s.length && isServerChar(s[k])) k++;
    while (k > j + 1 && s[k - 1] === '.') k--;
    if (k > j + 1) {
      end = k;
      // optional :port
      if (s[k] === ':' && k + 1 < s.length && s[k + 1] >= '0' && s[k + 1] <= '9') {
        let p = k + 1;
        while (p < s.length && p - k <= 5 && s[p] >= '0' && s[p] <= '9') p++;
        end = p;
      }
    }
  }
  // "@aliceB" or "@alice_x" glued to more word characters is not a mention.
  const after = s[end];
  if (after !== undefined && (isAlnum(after) || after === '_')) return null;
  return { end, handle };
}

function matchAutolink(s: string, at: number): { end: number; href: string } | null {
  const head = s.slice(at, at + 8).toLowerCase();
  const schemeLen = head.startsWith('https://') ? 8 : head.startsWith('http://') ? 7 : 0;
  if (schemeLen === 0) return null;
  const bodyStart = at + schemeLen;
  let j = bodyStart;
  let opens = 0;
  let closes = 0;
  while (j < s.length) {
    const c = s[j];
    if (isWS(c) || c === '<' || c === '>' || c === '"' || c === '`' || c === '|' || c < ' ' || c === '\u007f') break;
    if (c === '(') opens++;
    else if (c === ')') closes++;
    j++;
  }
  let end = j;
  while (end > bodyStart) {
    const c = s[end - 1];
    if (".,:;!?'*_~".includes(c)) {
      end--;
    } else if (c === ')' && closes > opens) {
      closes--;
      end--;
    } else {
      break;
    }
  }
  if (end === bodyStart || !URL_BODY_START.test(s[bodyStart])) return null;
  const href = safeHref(s.slice(at, end));
  if (href === null) return null;
  return { end, href };
}

// ---------------------------------------------------------------------------------------------
// Output

function renderBlockHtml(b: Block, out: string[]): void {
  switch (b.t) {
    case 'para':
      renderInlineHtml(b.children, out);
      break;
    case 'quote':
      out.push('<blockquote>');
      renderInlineHtml(b.children, out);
      out.push('</blockquote>');
      break;
    case 'pre':
      out.push(b.lang ? `<pre><code class="language-${b.lang}">` : '<pre><code>');
      out.push(escapeHtml(b.code), '</code></pre>');
      break;
  }
}

function renderInlineHtml(nodes: Inline[], out: string[]): void {
  for (const node of nodes) {
    switch (node.t) {
      case 'text':
        out.push(escapeHtml(node.s));
        break;
      case 'br':
        out.push('<br>');
        break;
      case 'code':
        out.push('<code>', escapeHtml(node.s).replace(/\n/g, '<br>'), '</code>');
        break;
      case 'link':
        out.push('<a href="', escapeHtml(node.href), LINK_ATTRS);
        renderInlineHtml(node.children, out);
        out.push('</a>');
        break;
      case 'mention':
        out.push(node.me ? '<span class="mention me">' : '<span class="mention">', escapeHtml(node.text), '</span>');
        break;
      case 'spoiler':
        out.push(SPOILER_OPEN);
        renderInlineHtml(node.children, out);
        out.push('</span>');
        break;
      default:
        out.push(`<${node.t}>`);
        renderInlineHtml(node.children, out);
        out.push(`</${node.t}>`);
    }
  }
}

function renderInlineText(nodes: Inline[], out: string[]): void {
  for (const node of nodes) {
    switch (node.t) {
      case 'text':
      case 'code':
        out.push(node.s);
        break;
      case 'br':
        out.push('\n');
        break;
      case 'mention':
        out.push(node.text);
        break;
      case 'spoiler':
        out.push('[spoiler]');
        break;
      default:
        renderInlineText(node.children, out);
    }
  }
}
