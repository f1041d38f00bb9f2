// A tiny history router: `/`, `/channels/GUILD[/CHANNEL]`, `/channels/@me[/DM]` (direct
// messages: no guild id starts with `@`), `/invite/CODE`. The server answers every such path
// with index.html, so links and reloads land in the right place.

export type Route =
  | { name: 'home' }
  | { name: 'channel'; guildId: string; channelId: string | null }
  | { name: 'dm'; channelId: string | null }
  | { name: 'invite'; code: string };

export function parseRoute(path: string): Route {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'channels' && parts[1] === '@me') return { name: 'dm', channelId: parts[2] ?? null };
  if (parts[0] === 'channels' && parts[1]) return { name: 'channel', guildId: parts[1], channelId: parts[2] ?? null };
  if (parts[0] === 'invite' && parts[1]) return { name: 'invite', code: parts[1] };
  return { name: 'home' };
}

export function routePath(r: Route): string {
  switch (r.name) {
    case 'home':
      return '/';
    case 'invite':
      return `/invite/${encodeURIComponent(r.code)}`;
    case 'dm':
      return `/channels/@me${r.channelId ? `/${encodeURIComponent(r.channelId)}` : ''}`;
    case 'channel':
      return `/channels/${encodeURIComponent(r.guildId)}${r.channelId ? `/${encodeURIComponent(r.channelId)}` : ''}`;
  }
}

/** The link that lets someone join with `code`. */
export function inviteLink(code: string): string {
  return location.origin + routePath({ name: 'invite', code });
}

class Router {
  route = $state<Route>(parseRoute(location.pathname));

  constructor() {
    addEventListener('popstate', () => (this.route = parseRoute(location.pathname)));
  }

  go(r: Route, replace = false): void {
    const path = routePath(r);
    if (path !== location.pathname) {
      if (replace) history.replaceState(null, '', path);
      else history.pushState(null, '', path);
    }
    this.route = r;
  }
}

export const router = new Router();
