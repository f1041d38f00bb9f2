// Checks that both themes in ../theme.css define every colour the components use, as #rrggbb,
// and that the text/background pairs meet WCAG 2.x AA contrast.

/// <reference types="node" />
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';

const css = readFileSync(new URL('../theme.css', import.meta.url), 'utf8');

const VARIABLES = [
  'bg',
  'bg-rail',
  'bg-side',
  'bg-input',
  'bg-hover',
  'bg-active',
  'text',
  'text-muted',
  'text-faint',
  'accent',
  'accent-text',
  'link',
  'danger',
  'danger-text',
  'success',
  'warning',
  'mention-bg',
  'mention-text',
  'mention-me-bg',
  'code-bg',
  'border',
  'focus',
  'spoiler',
];

interface Theme {
  vars: Record<string, string>;
  colorScheme: string | null;
}

function block(selector: RegExp): string {
  const m = selector.exec(css.replace(/\/\*[\s\S]*?\*\//g, ''));
  if (!m) throw new Error(`theme block ${selector} not found in theme.css`);
  return m[1];
}

function parseTheme(body: string): Theme {
  const vars: Record<string, string> = {};
  for (const m of body.matchAll(/--([a-z0-9-]+)\s*:\s*([^;]+);/g)) {
    if (m[1] in vars) throw new Error(`--${m[1]} defined twice`);
    vars[m[1]] = m[2].trim();
  }
  const cs = /(?:^|[\s;{])color-scheme\s*:\s*([a-z]+)\s*;/.exec(body);
  return { vars, colorScheme: cs ? cs[1] : null };
}

const themes: Record<'dark' | 'light', Theme> = {
  dark: parseTheme(block(/:root\s*,\s*:root\[data-theme='dark'\]\s*\{([^}]*)\}/)),
  light: parseTheme(block(/:root\[data-theme='light'\]\s*\{([^}]*)\}/)),
};

/** WCAG 2.x relative luminance of a #rrggbb colour. */
function luminance(hex: string): number {
  const n = parseInt(hex.slice(1), 16);
  const [r, g, b] = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map((v) => {
    const c = v / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** WCAG 2.x contrast ratio, 1 to 21. */
function contrast(a: string, b: string): number {
  const la = luminance(a);
  const lb = luminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

describe('contrast()', () => {
  it('matches known WCAG values', () => {
    expect(contrast('#000000', '#ffffff')).toBeCloseTo(21, 5);
    expect(contrast('#ffffff', '#ffffff')).toBeCloseTo(1, 5);
    expect(contrast('#777777', '#ffffff')).toBeCloseTo(4.48, 2);
    expect(contrast('#ffffff', '#777777')).toBe(contrast('#777777', '#ffffff'));
  });
});

// [foreground, background, minimum ratio]
const PAIRS: Array<[string, string, number]> = [
  ['text', 'bg', 4.5],
  ['text', 'bg-side', 4.5],
  ['text', 'bg-input', 4.5],
  ['text-muted', 'bg', 4.5],
  ['text-muted', 'bg-side', 4.5],
  ['link', 'bg', 4.5],
  ['accent-text', 'accent', 4.5],
  ['danger-text', 'danger', 4.5],
  ['mention-text', 'mention-bg', 4.5],
  ['text', 'mention-me-bg', 4.5],
  ['text', 'code-bg', 4.5],
  ['text', 'bg-hover', 4.5],
  ['text', 'bg-active', 4.5],
  ['focus', 'bg', 3],
  // Beyond the brief, pairs the components are likely to show as well.
  ['text', 'bg-rail', 4.5],
  ['text-muted', 'bg-input', 4.5],
  ['text-muted', 'bg-hover', 4.5],
  ['text-muted', 'bg-active', 4.5],
  ['text-muted', 'mention-me-bg', 4.5],
  ['link', 'bg-side', 4.5],
  ['link', 'mention-me-bg', 4.5],
  ['mention-text', 'mention-me-bg', 4.5],
  ['focus', 'bg-side', 3],
  ['success', 'bg', 3],
  ['success', 'bg-rail', 3], // the large "+" (add server) glyph
  ['bg', 'success', 3], // ...and its hover state
];

/** CSS `color-mix(in srgb, a p%, b)` for #rrggbb colours. */
function mix(a: string, b: string, p: number): string {
  const x = parseInt(a.slice(1), 16);
  const y = parseInt(b.slice(1), 16);
  const channel = (shift: number) =>
    Math.round(((x >> shift) & 255) * p + ((y >> shift) & 255) * (1 - p))
      .toString(16)
      .padStart(2, '0');
  return `#${channel(16)}${channel(8)}${channel(0)}`;
}

for (const [name, theme] of Object.entries(themes)) {
  describe(`${name} theme`, () => {
    it(`declares color-scheme: ${name}`, () => {
      expect(theme.colorScheme).toBe(name);
    });

    it('defines exactly the variables the components use', () => {
      expect(Object.keys(theme.vars).sort()).toEqual([...VARIABLES].sort());
    });

    it('uses #rrggbb colours only', () => {
      for (const [v, value] of Object.entries(theme.vars)) {
        expect(value, `--${v}`).toMatch(/^#[0-9a-f]{6}$/i);
      }
    });

    for (const [fg, bg, min] of PAIRS) {
      it(`--${fg} on --${bg} has contrast ≥ ${min}`, () => {
        const ratio = contrast(theme.vars[fg], theme.vars[bg]);
        expect(ratio, `${theme.vars[fg]} on ${theme.vars[bg]}: ${ratio.toFixed(2)}`).toBeGreaterThanOrEqual(min);
      });
    }

    it('keeps --text readable on the error banner (25% --danger over --bg)', () => {
      const banner = mix(theme.vars.danger, theme.vars.bg, 0.25);
      expect(contrast(theme.vars.text, banner)).toBeGreaterThanOrEqual(4.5);
    });

    it('keeps a hidden spoiler visibly distinct from the timeline', () => {
      expect(contrast(theme.vars.spoiler, theme.vars.bg)).toBeGreaterThanOrEqual(1.2);
    });
  });
}
