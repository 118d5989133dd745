/**
 * A scripted "browser" for the built-in IdP's device-flow pages: real HTTP, a real cookie jar
 * (path-scoped cookies matter: oidc-provider scopes its interaction cookies to their paths),
 * redirects followed by hand, forms parsed from the HTML. No JavaScript: auto-submitting
 * pages are submitted like a browser with scripts off would after pressing the button.
 */

interface Cookie {
  name: string;
  value: string;
  path: string;
  expires?: number;
}

/** Minimal RFC 6265 jar for one host: Path and expiry are honoured, Domain is host-only. */
export class CookieJar {
  private cookies: Cookie[] = [];

  store(url: URL, setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair = '', ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = defaultPath(url.pathname);
      let expires: number | undefined;
      for (const a of attrs) {
        const i = a.indexOf('=');
        const key = (i === -1 ? a : a.slice(0, i)).trim().toLowerCase();
        const val = i === -1 ? '' : a.slice(i + 1).trim();
        if (key === 'path' && val.startsWith('/')) path = val;
        else if (key === 'max-age' && /^-?\d+$/.test(val)) expires = Date.now() + Number(val) * 1000;
        else if (key === 'expires' && expires === undefined) {
          const t = Date.parse(val);
          if (!Number.isNaN(t)) expires = t;
        }
      }
      this.cookies = this.cookies.filter((c) => !(c.name === name && c.path === path));
      if (expires !== undefined && expires <= Date.now()) continue;
      this.cookies.push({ name, value, path, ...(expires !== undefined ? { expires } : {}) });
    }
  }

  header(url: URL): string | undefined {
    const now = Date.now();
    const matching = this.cookies
      .filter((c) => (c.expires === undefined || c.expires > now) && pathMatches(url.pathname, c.path))
      .sort((a, b) => b.path.length - a.path.length);
    return matching.length ? matching.map((c) => `${c.name}=${c.value}`).join('; ') : undefined;
  }
}

function defaultPath(p: string): string {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

function pathMatches(reqPath: string, cookiePath: string): boolean {
  if (reqPath === cookiePath) return true;
  if (!reqPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || reqPath[cookiePath.length] === '/';
}

interface Page {
  url: URL;
  status: number;
  html: string;
}

/** A browser session: one cookie jar, redirects followed manually (at most 20 per request). */
export class Browser {
  readonly jar = new CookieJar();

  async request(url: URL, init: { method?: string; form?: URLSearchParams } = {}): Promise<Page> {
    let current = url;
    let method = init.method ?? 'GET';
    let body: string | undefined = init.form?.toString();
    for (let hop = 0; hop < 20; hop++) {
      const headers: Record<string, string> = { 'user-agent': 'jit-test-browser/1.0', accept: 'text/html' };
      const cookie = this.jar.header(current);
      if (cookie) headers.cookie = cookie;
      if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
      const res = await fetch(current, { method, headers, body, redirect: 'manual' });
      this.jar.store(current, res.headers.getSetCookie());
      if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
        await res.arrayBuffer();
        current = new URL(res.headers.get('location')!, current);
        // 303 always, and 301/302 after a POST, become GET without a body (as browsers do).
        if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
          method = 'GET';
          body = undefined;
        }
        continue;
      }
      return { url: current, status: res.status, html: await res.text() };
    }
    throw new Error(`too many redirects from ${url.href}`);
  }
}

export interface ParsedForm {
  id: string | undefined;
  action: string;
  method: string;
  fields: Map<string, string>;
  /** Names of visible (non-hidden) inputs. */
  visible: string[];
}

function decodeEntities(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#(\d+);/g, (_m, n: string) => String.fromCharCode(Number(n)))
    .replace(/&amp;/g, '&');
}

function attr(tag: string, name: string): string | undefined {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag);
  if (!m) return undefined;
  return decodeEntities(m[1] ?? m[2] ?? m[3] ?? '');
}

/** The forms on a page with their inputs (enough HTML parsing for the IdP's own pages). */
export function parseForms(html: string): ParsedForm[] {
  const forms: ParsedForm[] = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const open = ` ${m[1] ?? ''}`;
    const inner = m[2] ?? '';
    const fields = new Map<string, string>();
    const visible: string[] = [];
    for (const im of inner.matchAll(/<input\b([^>]*)>/gi)) {
      const tag = ` ${im[1] ?? ''}`;
      const name = attr(tag, 'name');
      if (!name) continue;
      const type = (attr(tag, 'type') ?? 'text').toLowerCase();
      if (type === 'hidden') fields.set(name, attr(tag, 'value') ?? '');
      else {
        visible.push(name);
        if (!fields.has(name)) fields.set(name, attr(tag, 'value') ?? '');
      }
    }
    forms.push({
      id: attr(open, 'id'),
      action: attr(open, 'action') ?? '',
      method: (attr(open, 'method') ?? 'GET').toUpperCase(),
      fields,
      visible,
    });
  }
  return forms;
}

/** The page's text without tags, squeezed, for error messages. */
export function pageText(html: string): string {
  return decodeEntities(
    html
      .replace(/<style[\s\S]*?<\/style>/gi, '')
      .replace(/<script[\s\S]*?<\/script>/gi, '')
      .replace(/<[^>]+>/g, ' '),
  )
    .replace(/\s+/g, ' ')
    .trim();
}

export interface DeviceLoginOptions {
  verificationUriComplete: string;
  username: string;
  password: string;
  /** Called with the HTML of the user-code confirmation page (tests assert what it shows). */
  onConfirmPage?: (html: string) => void;
}

/** Plays the user's browser through the IdP's device-flow pages (real HTTP, real cookie jar). */
export async function completeDeviceLogin(opts: DeviceLoginOptions): Promise<void> {
  const browser = new Browser();
  let page = await browser.request(new URL(opts.verificationUriComplete));
  let loggedIn = false;
  let confirmed = false;
  for (let step = 0; step < 10; step++) {
    const text = pageText(page.html);
    if (/You are signed in/.test(text)) return;
    const forms = parseForms(page.html);
    const login = forms.find((f) => f.visible.includes('password'));
    if (login) {
      if (loggedIn) throw new Error(`login failed for ${opts.username}: ${text.slice(0, 300)}`);
      loggedIn = true;
      login.fields.set('username', opts.username);
      login.fields.set('password', opts.password);
      page = await browser.request(new URL(login.action, page.url), { method: 'POST', form: new URLSearchParams([...login.fields]) });
      continue;
    }
    const confirm = forms.find((f) => f.id === 'op.deviceConfirmForm');
    if (confirm) {
      if (confirmed) throw new Error(`the confirmation page came back: ${text.slice(0, 300)}`);
      confirmed = true;
      opts.onConfirmPage?.(page.html);
      page = await browser.request(new URL(confirm.action, page.url), { method: 'POST', form: new URLSearchParams([...confirm.fields]) });
      continue;
    }
    // oidc-provider's auto-submitting form_post page (GET /device?user_code=… → POST /device).
    const auto = forms.length === 1 && forms[0]!.method === 'POST' && forms[0]!.visible.length === 0 ? forms[0] : undefined;
    if (auto) {
      page = await browser.request(new URL(auto.action, page.url), { method: 'POST', form: new URLSearchParams([...auto.fields]) });
      continue;
    }
    throw new Error(`device login stopped at ${page.url.pathname} (HTTP ${page.status}): ${text.slice(0, 300)}`);
  }
  throw new Error('device login did not finish within 10 pages');
}
