import { describe, expect, it } from 'vitest';
import { plainText, renderMarkdown, safeHref } from './markdown';

const SPOILER = '<span class="spoiler" tabindex="0" role="button" aria-label="spoiler">';
const A = (href: string) => `<a href="${href}" target="_blank" rel="noopener noreferrer nofollow">`;
const md = (s: string, me?: string) => renderMarkdown(s, me === undefined ? undefined : { me });

// ---------------------------------------------------------------------------------------------
// A small checker for the renderer's output, used by the XSS and property tests.

const ALLOWED_TAGS = new Set(['a', 'strong', 'em', 'del', 'code', 'pre', 'span', 'br', 'blockquote']);
const TAG = /<(\/?)([a-z]+)((?:\s+[a-z-]+="[^"<>]*")*)>/y;

interface Check {
  ok: boolean;
  problem?: string;
  hrefs: string[];
}

function checkHtml(html: string): Check {
  const stack: string[] = [];
  const hrefs: string[] = [];
  const fail = (problem: string): Check => ({ ok: false, problem, hrefs });
  let i = 0;
  while (i < html.length) {
    const c = html[i];
    if (c === '>' || c === '"' || c === "'") return fail(`raw ${c} in text at ${i}`);
    if (c === '&') {
      if (!/^&(amp|lt|gt|quot|#39);/.test(html.slice(i, i + 6))) return fail(`bare & at ${i}`);
      i++;
      continue;
    }
    if (c !== '<') {
      i++;
      continue;
    }
    TAG.lastIndex = i;
    const m = TAG.exec(html);
    if (!m) return fail(`stray < at ${i}: ${html.slice(i, i + 30)}`);
    const [whole, slash, name, attrs] = m;
    if (!ALLOWED_TAGS.has(name)) return fail(`tag <${name}>`);
    if (slash) {
      if (stack.pop() !== name) return fail(`unbalanced </${name}>`);
    } else {
      for (const am of attrs.matchAll(/([a-z-]+)="([^"]*)"/g)) {
        const [, attr, value] = am;
        if (attr.startsWith('on') || attr === 'style' || attr === 'src') return fail(`attribute ${attr}`);
        if (attr === 'href') hrefs.push(value);
      }
      if (name === 'a' && !/^<a href="[^"]*" target="_blank" rel="noopener noreferrer nofollow">$/.test(whole)) {
        return fail(`bad anchor ${whole}`);
      }
      if (name !== 'br') stack.push(name);
    }
    i += whole.length;
  }
  if (stack.length) return fail(`unclosed ${stack.join(',')}`);
  for (const h of hrefs) {
    if (!/^(https?:\/\/|mailto:)/.test(h)) return fail(`href ${h}`);
  }
  return { ok: true, hrefs };
}

function expectSafe(html: string): Check {
  const r = checkHtml(html);
  expect(r.problem, html).toBeUndefined();
  return r;
}

// ---------------------------------------------------------------------------------------------

describe('renderMarkdown: plain text and escaping', () => {
  it('leaves plain text alone', () => {
    expect(md('hello world')).toBe('hello world');
  });

  it('returns an empty string for an empty message', () => {
    expect(md('')).toBe('');
  });

  it('escapes every HTML-significant character', () => {
    expect(md(`a & b < c > d " e ' f`)).toBe('a &amp; b &lt; c &gt; d &quot; e &#39; f');
  });

  it('shows raw <script> as text', () => {
    expect(md('<script>alert(1)</script>')).toBe('&lt;script&gt;alert(1)&lt;/script&gt;');
  });

  it('shows <img onerror> as text', () => {
    const html = md('<img src=x onerror="alert(1)">');
    expect(html).toBe('&lt;img src=x onerror=&quot;alert(1)&quot;&gt;');
    expectSafe(html);
  });

  it('keeps HTML entities as literal text', () => {
    expect(md('&lt;script&gt;')).toBe('&amp;lt;script&amp;gt;');
    expect(md('&#106;&amp;')).toBe('&amp;#106;&amp;amp;');
  });

  it('shows <a href=javascript:> as text', () => {
    const html = md('<a href=javascript:alert(1)>x</a>');
    expect(html).toBe('&lt;a href=javascript:alert(1)&gt;x&lt;/a&gt;');
    expect(checkHtml(html).hrefs).toEqual([]);
  });

  it('turns newlines into <br>', () => {
    expect(md('one\ntwo\n\nthree')).toBe('one<br>two<br><br>three');
  });

  it('tolerates non-string input without throwing', () => {
    expect(renderMarkdown(undefined as unknown as string)).toBe('');
    expect(renderMarkdown(42 as unknown as string)).toBe('42');
  });
});

describe('renderMarkdown: emphasis', () => {
  it('renders **bold**', () => {
    expect(md('a **bold** b')).toBe('a <strong>bold</strong> b');
  });

  it('renders *italic* and _italic_', () => {
    expect(md('*one* and _two_')).toBe('<em>one</em> and <em>two</em>');
  });

  it('renders ~~strike~~', () => {
    expect(md('~~gone~~')).toBe('<del>gone</del>');
  });

  it('renders ***bold italic***', () => {
    expect(md('***both***')).toBe('<em><strong>both</strong></em>');
  });

  it('nests formatting', () => {
    expect(md('**bold *and italic* ~~and struck~~**')).toBe(
      '<strong>bold <em>and italic</em> <del>and struck</del></strong>',
    );
  });

  it('lets bold span lines', () => {
    expect(md('**a\nb**')).toBe('<strong>a<br>b</strong>');
  });

  it('keeps unclosed markers literal', () => {
    expect(md('**bold')).toBe('**bold');
    expect(md('*it')).toBe('*it');
    expect(md('~~st')).toBe('~~st');
    expect(md('||sp')).toBe('||sp');
    expect(md('`code')).toBe('`code');
    expect(md('[text](x.com')).toBe('[text](x.com');
    expect(md('[text](http://x.com')).toBe(`[text](${A('http://x.com')}http://x.com</a>`);
  });

  it('does not italicise arithmetic or snake_case', () => {
    expect(md('2 * 3 * 4')).toBe('2 * 3 * 4');
    expect(md('snake_case_name')).toBe('snake_case_name');
  });

  it('does not format empty markers', () => {
    expect(md('****')).toBe('****');
    expect(md('||||')).toBe('||||');
    expect(md('** **')).toBe('** **');
  });

  it('keeps improperly interleaved markers balanced', () => {
    const html = md('**a ~~b** c~~');
    expect(html).toBe('<strong>a ~~b</strong> c~~');
    expectSafe(html);
    expectSafe(md('**a *b** c*'));
    expectSafe(md('||a **b|| c**'));
  });

  it('honours backslash escapes', () => {
    expect(md('\\*not italic\\*')).toBe('*not italic*');
    expect(md('\\@alice')).toBe('@alice');
    expect(md('C:\\Users\\x')).toBe('C:\\Users\\x');
  });
});

describe('renderMarkdown: code', () => {
  it('renders inline code without formatting inside', () => {
    expect(md('run `a **b** <b>c</b>` now')).toBe(
      'run <code>a **b** &lt;b&gt;c&lt;/b&gt;</code> now',
    );
  });

  it('does not autolink or mention inside inline code', () => {
    expect(md('`https://x.com @alice`')).toBe('<code>https://x.com @alice</code>');
  });

  it('supports double-backtick spans containing a backtick', () => {
    expect(md('``a ` b``')).toBe('<code>a ` b</code>');
  });

  it('renders a fenced block with a language class', () => {
    expect(md('```rust\nfn main() { **x** }\n```')).toBe(
      '<pre><code class="language-rust">fn main() { **x** }</code></pre>',
    );
  });

  it('drops a language that is not [a-z0-9]', () => {
    expect(md('```c++\nint x;\n```')).toBe('<pre><code>int x;</code></pre>');
    expect(md('```"><script>\nx\n```')).toBe('<pre><code>&quot;&gt;&lt;script&gt;\nx</code></pre>');
  });

  it('escapes HTML in a fenced block and keeps its newlines', () => {
    const html = md('```\n<b>**bold**</b>\n||x||\n```');
    expect(html).toBe('<pre><code>&lt;b&gt;**bold**&lt;/b&gt;\n||x||</code></pre>');
    expectSafe(html);
  });

  it('renders a one-line fenced block and the text around it', () => {
    expect(md('before\n```code```\nafter')).toBe('before<pre><code>code</code></pre>after');
  });

  it('leaves an unclosed fence literal', () => {
    expect(md('```js\nlet x')).toBe('```js<br>let x');
  });
});

describe('renderMarkdown: links', () => {
  it('renders [text](url)', () => {
    expect(md('[docs](https://example.com/a?b=1&c=2)')).toBe(
      `${A('https://example.com/a?b=1&amp;c=2')}docs</a>`,
    );
  });

  it('formats link text but not links inside it', () => {
    expect(md('[**bold** https://x.com](https://y.com)')).toBe(
      `${A('https://y.com')}<strong>bold</strong> https://x.com</a>`,
    );
  });

  it('allows mailto: links and balanced parentheses', () => {
    expect(md('[mail](mailto:a@b.org)')).toBe(`${A('mailto:a@b.org')}mail</a>`);
    expect(md('[wiki](https://en.wikipedia.org/wiki/Rust_(language))')).toBe(
      `${A('https://en.wikipedia.org/wiki/Rust_(language)')}wiki</a>`,
    );
  });

  it('lower-cases the scheme', () => {
    expect(md('[x](HTTPS://EXAMPLE.COM)')).toBe(`${A('https://EXAMPLE.COM')}x</a>`);
  });

  it('autolinks bare URLs and trims trailing punctuation', () => {
    expect(md('see https://example.com/path.')).toBe(
      `see ${A('https://example.com/path')}https://example.com/path</a>.`,
    );
    expect(md('(http://x.org/a_(b))')).toBe(`(${A('http://x.org/a_(b)')}http://x.org/a_(b)</a>)`);
  });

  it('autolinks inside bold and spoilers', () => {
    expect(md('**https://x.com**')).toBe(`<strong>${A('https://x.com')}https://x.com</a></strong>`);
    expect(md('||https://x.com||')).toBe(`${SPOILER}${A('https://x.com')}https://x.com</a></span>`);
  });

  it('does not autolink other schemes or glued text', () => {
    expect(md('ftp://x.com')).toBe('ftp://x.com');
    expect(md('xhttps://x.com')).toBe('xhttps://x.com');
    expect(md('https://')).toBe('https://');
  });

  const evil = [
    'javascript:alert(1)',
    'JaVaScRiPt:alert(1)',
    'java\tscript:alert(1)',
    'java\nscript:alert(1)',
    '&#106;avascript:alert(1)',
    '&#x6A;avascript:alert(1)',
    'javascript&colon;alert(1)',
    ' javascript:alert(1)',
    '\u0001javascript:alert(1)',
    'data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==',
    'vbscript:msgbox(1)',
    '/relative/path',
    '//evil.com',
    'https:&#47;&#47;evil.com',
  ];
  for (const url of evil) {
    it(`refuses ${JSON.stringify(url)} as plain text`, () => {
      const html = md(`[click](${url})`);
      const r = expectSafe(html);
      expect(r.hrefs).toEqual([]);
      expect(html).not.toContain('<a');
      expect(html.startsWith('[click](')).toBe(true);
    });
  }

  it('safeHref normalises safe URLs and refuses the rest', () => {
    expect(safeHref(' https://a.b ')).toBe('https://a.b');
    expect(safeHref('Mailto:x@y.z')).toBe('mailto:x@y.z');
    expect(safeHref('https://')).toBeNull();
    expect(safeHref('https://a b')).toBeNull();
    expect(safeHref('javascript:x')).toBeNull();
    expect(safeHref('&#104;ttps://a.b')).toBeNull();
  });
});

describe('renderMarkdown: spoilers', () => {
  it('renders ||spoiler||', () => {
    expect(md('a ||secret|| b')).toBe(`a ${SPOILER}secret</span> b`);
  });

  it('formats inside spoilers', () => {
    expect(md('||**bold** and `code`||')).toBe(`${SPOILER}<strong>bold</strong> and <code>code</code></span>`);
  });

  it('nests spoilers without breaking tag balance', () => {
    const html = md('||outer ||inner|| tail||');
    expect(html).toBe(`${SPOILER}outer ${SPOILER}inner</span> tail</span>`);
    expectSafe(html);
  });

  it('keeps odd spoiler markers balanced', () => {
    for (const s of ['||a||b||', '||a ||b||', '|| a || b ||', '||a **b|| c**', '||||a||||||']) {
      expectSafe(md(s));
    }
  });

  it('allows spaces inside spoiler markers', () => {
    expect(md('|| spoiler ||')).toBe(`${SPOILER} spoiler </span>`);
  });
});

describe('renderMarkdown: mentions', () => {
  it('renders @handle', () => {
    expect(md('hi @alice!')).toBe('hi <span class="mention">@alice</span>!');
  });

  it('renders @handle:server', () => {
    expect(md('@bob.smith_2:chat.example.org hello')).toBe(
      '<span class="mention">@bob.smith_2:chat.example.org</span> hello',
    );
  });

  it('marks mentions of me', () => {
    expect(md('@alice and @bob', 'alice')).toBe(
      '<span class="mention me">@alice</span> and <span class="mention">@bob</span>',
    );
  });

  it('compares only the part before the colon', () => {
    expect(md('@alice:other.org', 'alice')).toBe('<span class="mention me">@alice:other.org</span>');
    expect(md('@alicex', 'alice')).toBe('<span class="mention">@alicex</span>');
  });

  it('does not treat e-mail addresses or glued text as mentions', () => {
    expect(md('mail a@b.com')).toBe('mail a@b.com');
    expect(md('@Alice')).toBe('@Alice');
    expect(md('@')).toBe('@');
  });

  it('leaves a trailing full stop and a bare colon outside the mention', () => {
    expect(md('thanks @bob.')).toBe('thanks <span class="mention">@bob</span>.');
    expect(md('@bob: hi')).toBe('<span class="mention">@bob</span>: hi');
  });
});

describe('renderMarkdown: quotes', () => {
  it('renders > quote lines as one blockquote', () => {
    expect(md('> one\n> **two**\nafter')).toBe('<blockquote>one<br><strong>two</strong></blockquote>after');
  });

  it('needs a space after >', () => {
    expect(md('>no')).toBe('&gt;no');
    expect(md('a > b')).toBe('a &gt; b');
  });

  it('renders text before a quote', () => {
    expect(md('said:\n> hi')).toBe('said:<blockquote>hi</blockquote>');
  });
});

describe('renderMarkdown: robustness', () => {
  // Inputs that make backtracking parsers blow up. Speed is not asserted here (no timed
  // tests): a parser gone quadratic shows as this test hitting Vitest's timeout.
  it('renders 10k-character hostile inputs safely', () => {
    const inputs = [
      '*'.repeat(10_000),
      '*a'.repeat(5_000),
      '_a '.repeat(3_400),
      '||a '.repeat(2_500),
      '['.repeat(10_000),
      '[a]('.repeat(2_500),
      '[a](b'.repeat(2_000) + ')',
      '`a'.repeat(5_000),
      '``a`'.repeat(2_500),
      '@a:'.repeat(3_400),
      'https://'.repeat(1_250),
      'https://x.com/' + ')'.repeat(10_000),
      '> '.repeat(5_000),
      '```'.repeat(3_400),
      '&#106;'.repeat(1_700),
      '\\'.repeat(10_000),
      '**a ~~b ||c _d '.repeat(700),
    ];
    for (const s of inputs) {
      const html = md(s);
      expectSafe(html);
    }
  });

  it('caps nesting depth', () => {
    const s = '||a '.repeat(1000) + 'x' + ' a||'.repeat(1000);
    const html = md(s);
    expectSafe(html);
    expect((html.match(/<span/g) ?? []).length).toBeLessThanOrEqual(20);
  });

  it('passes a seeded random property test', () => {
    // mulberry32
    let seed = 0x5eed1234;
    const rand = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const tokens = [
      '*', '**', '***', '_', '__', '~~', '~', '||', '|', '`', '``', '```', '```js\n',
      '[', ']', '(', ')', '](', '[x](', 'https://a.b', 'http://x.y/(z)', 'mailto:a@b',
      'javascript:', 'JaVaScRiPt:', '&#106;', '&colon;', 'data:', '@', '@me', '@bob:srv.org',
      '> ', '>', '\n', ' ', '\t', 'a', 'word', '\\', '<', '>', '</', '<script>', '</span>',
      '<img src=x onerror=alert(1)>', '"', "'", '&', '&amp;', '&lt;', '<a href=javascript:>',
      '<b>', 'é', '😀', '\u0000', '\u200b',
    ];
    let links = 0;
    for (let n = 0; n < 2000; n++) {
      const len = 1 + Math.floor(rand() * 30);
      let s = '';
      for (let k = 0; k < len; k++) s += tokens[Math.floor(rand() * tokens.length)];
      const html = renderMarkdown(s, { me: 'me' });
      const r = checkHtml(html);
      if (!r.ok) throw new Error(`${r.problem}\ninput: ${JSON.stringify(s)}\noutput: ${html}`);
      links += r.hrefs.length;
      expect(typeof plainText(s)).toBe('string');
    }
    expect(links).toBeGreaterThan(50); // the generator does exercise links
  });
});

describe('plainText', () => {
  it('strips formatting', () => {
    expect(plainText('**bold** *it* ~~s~~ `c` [link](https://x.com) @bob')).toBe('bold it s c link @bob');
  });

  it('hides spoilers', () => {
    expect(plainText('the end: ||he dies||')).toBe('the end: [spoiler]');
  });

  it('keeps code blocks, quotes and newlines, unescaped', () => {
    expect(plainText('> quoted\nline <b>\n```\ncode **x**\n```')).toBe('quoted\nline <b>\ncode **x**');
  });

  it('returns unsafe links as their source text', () => {
    expect(plainText('[x](javascript:alert(1))')).toBe('[x](javascript:alert(1))');
  });
});
