// Arrow-key movement inside a list of focusable items (rails, tabs, the timeline):
// ArrowUp/ArrowDown (or Left/Right for horizontal lists), Home and End.
export function arrowNav(node: HTMLElement, opts: { selector: string; horizontal?: boolean }) {
  function onKey(e: KeyboardEvent) {
    const prev = opts.horizontal ? 'ArrowLeft' : 'ArrowUp';
    const next = opts.horizontal ? 'ArrowRight' : 'ArrowDown';
    if (![prev, next, 'Home', 'End'].includes(e.key)) return;
    const items = Array.from(node.querySelectorAll<HTMLElement>(opts.selector));
    const at = items.indexOf(document.activeElement as HTMLElement);
    if (at < 0) return;
    const to = e.key === 'Home' ? 0 : e.key === 'End' ? items.length - 1 : e.key === next ? Math.min(items.length - 1, at + 1) : Math.max(0, at - 1);
    e.preventDefault();
    items[to]?.focus();
  }
  node.addEventListener('keydown', onKey);
  return { destroy: () => node.removeEventListener('keydown', onKey) };
}

export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  return (words.length > 1 ? words[0][0] + words[1][0] : (words[0] ?? '?').slice(0, 2)).toUpperCase();
}
