/**
 * confab.js — the browser connection module for a confab server.
 *
 * No dependencies, no build step: an ES module that runs in any current
 * browser. It does four jobs so an app does not have to:
 *
 *  1. Auth. Logs in, keeps the token pair in localStorage (so every tab of
 *     the origin is signed in), refreshes the access token before it expires
 *     and after a 401. Refresh tokens are single-use and re-presenting a spent
 *     one revokes the whole login, so only one tab refreshes at a time (Web
 *     Lock "confab-auth"); the others re-read the newest pair afterwards.
 *  2. Delivery. Opens the per-user event stream (`GET /v1/events`, SSE),
 *     resumes from the last position it delivered (kept in sessionStorage, so
 *     a page reload resumes too), delivers each durable event once and in
 *     order, and turns the server's `reset` into a "reload your state" signal.
 *     A position (the SSE `id:`, the poll `cursor`) is an opaque string: it is
 *     stored and sent back as it came, never compared or computed with;
 *     duplicates are recognised by a bounded set of recently seen positions.
 *  3. Fallback. When the stream fails repeatedly while plain HTTP works, or
 *     no `ready` frame arrives within `readyTimeout` (a proxy that buffers
 *     responses), it long-polls `GET /v1/events/poll` instead and tries SSE
 *     again every `sseRetryInterval`. Reconnects use exponential backoff with
 *     jitter; the status says when the next try is due.
 *  4. Many tabs. One leader tab per user holds the connection (Web Lock
 *     "confab-leader-<userId>", held for the tab's lifetime) and relays every
 *     event and status change over BroadcastChannel("confab-<userId>"). When
 *     the leader closes, the next tab gets the lock at once and resumes from
 *     its own last position (followers track it too), so nothing is lost and
 *     nothing is delivered twice. The leader relays each event with the
 *     position before it, so a follower notices a gap without arithmetic. Web Locks need a secure context (https or
 *     localhost); elsewhere each tab keeps its own connection.
 *
 * Usage:
 *
 *   import { Confab } from './confab.js';
 *
 *   const confab = new Confab();                 // same origin; or { baseURL: 'https://chat.example' }
 *   if (!confab.user) await confab.login('alice', 'correct horse');
 *
 *   confab.on('sync', () => reloadEverything());  // first load, and after a server `reset`
 *   confab.on('message.created', ({ message }) => show(message));
 *   confab.on('typing', t => showTyping(t.conversation_id, t.user_id, t.typing, t.expires_at));
 *   confab.on('status', ({ status, retryAt }) => pill(status, retryAt));
 *   confab.on('logout', () => showLogin());
 *   confab.start();
 *
 *   await confab.api('POST', `/v1/conversations/${id}/messages`, { body: 'hi', client_msg_id: uuid() });
 *
 * Events (`confab.on(type, fn)` calls fn(detail) and returns an unsubscribe function):
 *   'sync'         {reason: 'start'|'reset'|'gap', cursor}  load or reload all state now;
 *                  events that follow apply on top of it
 *   'event'        {position, type, data}  every durable event, in stream order, once
 *   'message.created' | 'conversation.created' | 'member.joined' | 'member.left' | 'read'
 *                  (data, event)  the same, by type; data as in the API
 *   'typing'       {conversation_id, user_id, typing, expires_at}   ephemeral
 *   'presence'     {user_id, online}                                ephemeral
 *   'reset'        {cursor}  the server no longer had our position (followed by 'sync')
 *   'status'       {status, retryAt, transport, leader}; status is one of
 *                  'connecting' | 'live' | 'longpoll' | 'reconnecting' | 'offline' | 'stopped'
 *   'login' {user} / 'logout' {}   also when another tab signs in or out
 *
 * Other API: confab.user, confab.status, confab.position, confab.isLeader,
 * confab.start(), confab.stop(), confab.login(username, password),
 * confab.register(username, password, displayName?), confab.logout(),
 * confab.api(method, path, body?, {signal, timeout}) → parsed JSON or null,
 * throws ConfabError {status, code, title, detail, retryAfter} (status 0, code
 * 'network' when the server could not be reached); confab.debug is a live
 * view {status, position, isLeader, transport, tabId, received: [position...]}.
 */

const DURABLE = ['message.created', 'conversation.created', 'member.joined', 'member.left', 'read'];
const EPHEMERAL = ['typing', 'presence'];
// SSE attempts that must fail before we conclude streaming (not the server) is broken.
const SSE_STRIKES = 3;
// How many recent events a leader keeps for followers, and positions a tab remembers as seen.
const RECENT = 1000;

// A position from the server, as a string; the pre-event-log server sent integers.
const asPosition = (p) => (p === null || p === undefined || p === '' ? null : String(p));

/** An API error: a problem+json body, or status 0 / code 'network' when unreachable. */
export class ConfabError extends Error {
  constructor(status, problem = {}, retryAfter = 0) {
    super(problem.detail || problem.title || (status ? `HTTP ${status}` : 'network error'));
    this.name = 'ConfabError';
    this.status = status;
    this.code = problem.code || (status ? 'http_' + status : 'network');
    this.title = problem.title || '';
    this.detail = problem.detail || '';
    this.retryAfter = retryAfter;
  }
}

/** A random UUID; crypto.randomUUID only exists in secure contexts. */
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      window.removeEventListener('online', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
    window.addEventListener('online', done, { once: true }); // back online: retry now, not later
  });

const readJSON = (storage, key) => {
  try {
    return JSON.parse(storage.getItem(key));
  } catch {
    return null;
  }
};

/**
 * Runs fn while holding a cross-tab mutex. Web Locks where available; in an
 * insecure context (no navigator.locks) a best-effort localStorage lease, so
 * two tabs still do not rotate the same refresh token at once.
 */
async function withLock(name, fn) {
  if (navigator.locks?.request) return navigator.locks.request(name, fn);
  const key = 'confab.lock.' + name;
  const me = uuid();
  for (;;) {
    const cur = readJSON(localStorage, key);
    if (!cur || cur.until < Date.now()) {
      localStorage.setItem(key, JSON.stringify({ me, until: Date.now() + 10000 }));
      await sleep(40); // let a racing tab's write land, then see who won
      if (readJSON(localStorage, key)?.me === me) break;
    }
    await sleep(50 + Math.random() * 100);
  }
  try {
    return await fn();
  } finally {
    if (readJSON(localStorage, key)?.me === me) localStorage.removeItem(key);
  }
}

/** Token storage, refresh and authenticated requests. Used by Confab; usable alone. */
export class ConfabAuth extends EventTarget {
  #base;
  #key;
  #timer = 0;

  constructor({ baseURL = '', storageKey = 'confab.auth' } = {}) {
    super();
    this.#base = baseURL.replace(/\/$/, '');
    this.#key = storageKey;
    // Another tab signed in, out, or refreshed: follow it.
    window.addEventListener('storage', (e) => {
      if (e.key !== this.#key && e.key !== null) return;
      let before = null;
      try {
        before = JSON.parse(e.oldValue)?.user?.id ?? null;
      } catch {
        // not ours to parse: treat as signed out before
      }
      const now = this.session?.user.id ?? null;
      if (before && !now) this.#emit('logout');
      else if (now && now !== before) this.#emit('login', { user: this.session.user });
      this.#schedule();
    });
    this.#schedule();
  }

  /** {user, access_token, refresh_token, expires_at, lifetime} or null; always the newest (shared by all tabs). */
  get session() {
    return readJSON(localStorage, this.#key);
  }

  get user() {
    return this.session?.user ?? null;
  }

  login(username, password) {
    return this.#signIn('/v1/auth/login', { username, password });
  }

  register(username, password, displayName) {
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    return this.#signIn('/v1/auth/register', body);
  }

  async logout() {
    const s = this.session;
    this.#clear();
    if (s) await this.#post('/v1/auth/logout', { refresh_token: s.refresh_token }).catch(() => {});
  }

  /** A usable access token, refreshed first when it is about to expire. */
  async token() {
    const s = this.session;
    if (!s) throw new ConfabError(401, { code: 'unauthorized', title: 'Not signed in' });
    return this.#expiring(s) ? this.refresh(s.access_token) : s.access_token;
  }

  /**
   * Rotates the token pair unless another tab already did. `stale` is the
   * access token the caller found wanting: if the stored one differs and is
   * fresh, that tab's refresh is reused instead of spending ours again.
   */
  refresh(stale) {
    return withLock('confab-auth', async () => {
      const s = this.session;
      if (!s) throw new ConfabError(401, { code: 'unauthorized', title: 'Not signed in' });
      if (s.access_token !== stale && !this.#expiring(s)) return s.access_token;
      let res;
      try {
        res = await this.#post('/v1/auth/refresh', { refresh_token: s.refresh_token });
      } catch (err) {
        if (err.status === 401) {
          this.#clear(); // spent, expired or revoked: the login is over
          this.#emit('logout');
        }
        throw err;
      }
      this.#save(res);
      return res.access_token;
    });
  }

  /** An authenticated JSON request; a 401 refreshes once and retries. */
  async request(method, path, body, { signal, timeout = 30000 } = {}) {
    let token = await this.token();
    for (let retried = false; ; retried = true) {
      try {
        return await this.#fetch(method, path, body, token, signal, timeout);
      } catch (err) {
        if (err.status !== 401 || retried) throw err;
        token = await this.refresh(token);
      }
    }
  }

  async #signIn(path, body) {
    const res = await this.#post(path, body);
    this.#save(res);
    this.#emit('login', { user: res.user });
    return res.user;
  }

  #post(path, body) {
    return this.#fetch('POST', path, body, null, undefined, 30000);
  }

  async #fetch(method, path, body, token, signal, timeout) {
    const ctl = new AbortController();
    const abort = () => ctl.abort();
    signal?.addEventListener('abort', abort, { once: true });
    const timer = setTimeout(abort, timeout);
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(this.#base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
        signal: ctl.signal,
      });
    } catch {
      if (signal?.aborted) throw new DOMException('aborted', 'AbortError');
      throw new ConfabError(0);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
    }
    if (res.status === 204) return null;
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new ConfabError(res.status, data, Number(res.headers.get('Retry-After')) || 0);
    return data;
  }

  #save(t) {
    const lifetime = t.expires_in * 1000;
    const s = { user: t.user, access_token: t.access_token, refresh_token: t.refresh_token, expires_at: Date.now() + lifetime, lifetime };
    localStorage.setItem(this.#key, JSON.stringify(s));
    this.#schedule();
  }

  #clear() {
    localStorage.removeItem(this.#key);
    clearTimeout(this.#timer);
  }

  // Refresh a minute before expiry (a quarter of the lifetime for short-lived tokens).
  #expiring(s) {
    return Date.now() > s.expires_at - Math.min(60000, s.lifetime / 4);
  }

  // Every tab schedules the proactive refresh; the lock and the staleness
  // check in refresh() make sure only the first one actually rotates.
  #schedule() {
    clearTimeout(this.#timer);
    const s = this.session;
    if (!s) return;
    const due = s.expires_at - Math.min(60000, s.lifetime / 4) - Date.now();
    this.#timer = setTimeout(() => {
      this.refresh(s.access_token).catch((err) => {
        if (err.status !== 401) this.#timer = setTimeout(() => this.#schedule(), 10000);
      });
    }, Math.max(0, due) + Math.random() * 1000);
  }

  #emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** The real-time client. See the header for the events it emits. */
export class Confab extends EventTarget {
  #base;
  #readyTimeout;
  #sseRetryInterval;
  #pollTimeout;
  #maxBackoff;
  #withCredentials;

  #user = null;
  #running = null; // AbortController of the current start()
  #channel = null;
  #tabId = uuid();
  #leader = false;
  #pos = null; // the last position delivered (an opaque string); null: none yet (a new tab)
  #seen = new Set(); // recently delivered positions, oldest first: drops duplicates
  #status = 'stopped';
  #retryAt = null;
  #transport = null;
  #leaderStatus = null; // follower: the last status the leader relayed
  #mode = 'sse';
  #attempt = null; // AbortController of the current stream or poll
  #recent = []; // leader: the last events, replayed to tabs that missed some
  #pending = []; // follower: {ev, prev} that arrived after a gap, in arrival (stream) order
  #gapTimer = 0;
  #typing = new Set(); // "conv|user" keys in the last poll's typing snapshot
  #pollSession = null; // sent back so consecutive polls count as one session

  /**
   * @param {object} [o]
   * @param {string} [o.baseURL='']             server origin; '' is the page's
   * @param {ConfabAuth} [o.auth]               share one auth between clients
   * @param {number} [o.readyTimeout=4000]      ms to wait for `ready` before suspecting a buffering proxy
   * @param {number} [o.sseRetryInterval=60000] ms between SSE attempts while long-polling
   * @param {number} [o.pollTimeout=25]         seconds a long-poll may wait
   * @param {number} [o.maxBackoff=10000]       ms, cap of the reconnect backoff
   * @param {boolean} [o.withCredentials=false] for a cross-origin EventSource with the cookie
   */
  constructor({ baseURL = '', auth, readyTimeout = 4000, sseRetryInterval = 60000, pollTimeout = 25, maxBackoff = 10000, withCredentials = false } = {}) {
    super();
    this.#base = baseURL.replace(/\/$/, '');
    this.auth = auth ?? new ConfabAuth({ baseURL });
    this.#readyTimeout = readyTimeout;
    this.#sseRetryInterval = sseRetryInterval;
    this.#pollTimeout = pollTimeout;
    this.#maxBackoff = maxBackoff;
    this.#withCredentials = withCredentials;
    this.auth.addEventListener('login', (e) => this.#emit('login', e.detail));
    this.auth.addEventListener('logout', () => {
      if (this.#user) sessionStorage.removeItem(this.#posKey());
      this.stop();
      this.#emit('logout');
    });
    const self = this;
    this.debug = {
      tabId: this.#tabId,
      received: [],
      get status() { return self.#status; },
      get position() { return self.#pos; },
      get isLeader() { return self.#leader; },
      get transport() { return self.#transport; },
    };
  }

  get user() { return this.auth.user; }
  get status() { return this.#status; }
  get position() { return this.#pos; }
  get isLeader() { return this.#leader; }

  login(username, password) { return this.auth.login(username, password); }
  register(username, password, displayName) { return this.auth.register(username, password, displayName); }
  async logout() {
    if (this.#user) sessionStorage.removeItem(this.#posKey());
    this.stop();
    await this.auth.logout();
    this.#emit('logout');
  }
  api(method, path, body, opts) { return this.auth.request(method, path, body, opts); }

  /** Subscribes fn(detail, event) to an event; returns the unsubscribe function. */
  on(type, fn) {
    const listener = (e) => fn(e.detail, e.event);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /** Starts receiving events (as leader or follower). Needs a signed-in user. */
  start() {
    if (this.#running) return;
    const user = this.auth.user;
    if (!user) throw new ConfabError(401, { code: 'unauthorized', title: 'Not signed in' });
    this.#user = user;
    const run = (this.#running = new AbortController());
    const { signal } = run;

    this.#pos = sessionStorage.getItem(this.#posKey()) || null;
    this.#seen.clear();
    this.#setStatus('connecting');
    // A reloaded tab knows its position: the app can load state right away.
    if (this.#pos !== null) queueMicrotask(() => this.#emit('sync', { reason: 'start', cursor: this.#pos }));

    this.#channel = new BroadcastChannel('confab-' + user.id);
    this.#channel.onmessage = (e) => this.#onRelay(e.data);
    const onNet = (e) => {
      if (e.type === 'offline') this.#attempt?.abort(); // a leader drops its connection and waits for 'online'
      if (!this.#leader) this.#followStatus();
    };
    window.addEventListener('online', onNet, { signal });
    window.addEventListener('offline', onNet, { signal });
    this.#post({ t: 'hello', tab: this.#tabId, after: this.#pos });

    if (navigator.locks?.request) {
      navigator.locks
        .request('confab-leader-' + user.id, { signal }, () => this.#lead(signal))
        .catch(() => {}); // AbortError: stopped while waiting to lead
    } else {
      this.#lead(signal);
    }
  }

  /** Closes the connection and leaves the tab group. */
  stop() {
    if (!this.#running) return;
    this.#running.abort();
    this.#running = null;
    this.#channel?.close();
    this.#channel = null;
    this.#leader = false;
    this.#clearPending();
    this.#setStatus('stopped');
  }

  // ---- leader: the connection ------------------------------------------

  // Runs for as long as this tab leads; the Web Lock is held until it returns.
  async #lead(signal) {
    if (signal.aborted) return;
    this.#leader = true;
    this.#clearPending(); // the server resends whatever followed our last position
    this.#recent = [];
    this.#setStatus('connecting');
    this.#post({ t: 'leader', tab: this.#tabId });
    await this.#run(signal);
  }

  async #run(signal) {
    let failures = 0; // consecutive failed attempts: drives the backoff
    let strikes = 0; // consecutive SSE attempts that never became healthy
    let probeAt = 0; // long-poll mode: when to try SSE again
    let unlink = null;
    this.#mode = 'sse';
    while (!signal.aborted) {
      if (unlink) signal.removeEventListener('abort', unlink);
      if (!navigator.onLine) {
        this.#setStatus('offline');
        await sleep(3600e3, signal); // woken by 'online'
        failures = 0;
        continue;
      }
      const attempt = (this.#attempt = new AbortController());
      unlink = () => attempt.abort();
      signal.addEventListener('abort', unlink);

      let ok;
      if (this.#mode === 'sse') {
        const probing = this.#status === 'longpoll';
        const r = await this.#stream(attempt.signal);
        // A healthy stream ended (token expiry, server restart, slow
        // reader): reconnect at once.
        if (r.lived > 2000) {
          failures = strikes = 0;
          continue;
        }
        if (signal.aborted) break;
        // A zero-wait poll tells "server down" from "streaming broken",
        // refreshes a rejected token (which also renews the cookie), and
        // delivers anything waiting, so the retry below loses nothing.
        ok = await this.#poll(attempt.signal, 0);
        // Only failures while plain HTTP works count against SSE.
        if (!ok) strikes = 0;
        else strikes = r.stalled || probing ? SSE_STRIKES : strikes + 1;
        if (ok && strikes >= SSE_STRIKES) {
          this.#mode = 'poll';
          probeAt = Date.now() + this.#sseRetryInterval;
          failures = 0;
          this.#setStatus('longpoll', null, 'longpoll');
          continue;
        }
      } else {
        if (Date.now() >= probeAt) {
          this.#mode = 'sse'; // time to see whether streaming works again
          continue;
        }
        const wait = Math.max(1, Math.min(this.#pollTimeout, Math.ceil((probeAt - Date.now()) / 1000)));
        ok = await this.#poll(attempt.signal, wait);
        if (ok) {
          failures = 0;
          this.#setStatus('longpoll', null, 'longpoll');
          continue;
        }
        this.#mode = 'sse'; // the server itself is unreachable: start over with SSE
      }
      if (signal.aborted || !navigator.onLine) continue;
      failures++;
      const cap = Math.min(this.#maxBackoff, 500 * 2 ** (failures - 1));
      const delay = Math.round(cap / 2 + (Math.random() * cap) / 2); // jitter: tabs of many users do not return in lockstep
      this.#setStatus('reconnecting', Date.now() + delay);
      await sleep(delay, signal);
    }
  }

  // One SSE connection, from open to close. Resolves {lived, stalled}:
  // lived = ms it was up after `ready` (0: never ready); stalled = nothing
  // arrived within readyTimeout, the mark of a buffering proxy.
  async #stream(signal) {
    try {
      await this.auth.token(); // renews the cookie EventSource will send if it is about to expire
    } catch {
      return { lived: 0, stalled: false };
    }
    const url = new URL(this.#base + '/v1/events', location.href);
    if (this.#pos !== null) url.searchParams.set('last_event_id', this.#pos);

    return new Promise((resolve) => {
      const es = new EventSource(url, { withCredentials: this.#withCredentials });
      let readyAt = 0;
      let finished = false;
      const finish = (stalled = false) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        es.close(); // we reconnect ourselves: EventSource's own retry cannot refresh the token
        signal.removeEventListener('abort', onAbort);
        resolve({ lived: readyAt ? Date.now() - readyAt : 0, stalled });
      };
      const onAbort = () => finish();
      signal.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(() => finish(true), this.#readyTimeout);
      const parse = (e) => {
        try {
          return JSON.parse(e.data);
        } catch {
          return null;
        }
      };

      es.addEventListener('ready', (e) => {
        const d = parse(e);
        clearTimeout(timer);
        readyAt = Date.now();
        if (d) this.#serverCursor(d.cursor);
        this.#setStatus('live', null, 'sse');
      });
      for (const type of DURABLE) {
        es.addEventListener(type, (e) => {
          const data = parse(e);
          if (e.lastEventId && data) this.#fromServer({ position: e.lastEventId, type, data });
        });
      }
      for (const type of EPHEMERAL) {
        es.addEventListener(type, (e) => {
          const data = parse(e);
          if (data) this.#ephemeral(type, data);
        });
      }
      es.addEventListener('reset', (e) => {
        const d = parse(e);
        if (d) this.#reset(asPosition(d.cursor));
      });
      es.onerror = () => finish();
    });
  }

  // One long-poll request. Resolves true when the server answered.
  async #poll(signal, timeout) {
    const q = new URLSearchParams({ timeout: String(timeout) });
    if (this.#pos !== null) q.set('cursor', this.#pos);
    if (this.#pollSession) q.set('session_id', this.#pollSession);
    let res;
    try {
      res = await this.auth.request('GET', '/v1/events/poll?' + q, undefined, { signal, timeout: (timeout + 15) * 1000 });
    } catch {
      return false;
    }
    this.#pollSession = res.session_id || null;
    if (res.reset) this.#reset(asPosition(res.cursor));
    else this.#serverCursor(res.cursor);
    for (const ev of res.events || []) {
      // `position` since the event log; `seq` before it. Either way an opaque string to us.
      const position = asPosition(ev.position ?? ev.seq);
      if (position !== null) this.#fromServer({ position, type: ev.type, data: ev.data });
    }
    this.#typingSnapshot(res.typing || []);
    return true;
  }

  // The server told us where it stands (`ready`, a poll's cursor). Only a
  // new tab takes it; a cursor the server no longer knows gets an explicit
  // `reset`, so there is nothing to compare here.
  #serverCursor(cursor) {
    const c = asPosition(cursor);
    if (this.#pos === null && c !== null) this.#adopt(c);
  }

  #fromServer(ev) {
    if (this.#seen.has(ev.position)) return; // overlap of backfill and live, or SSE and poll
    const prev = this.#pos;
    this.#deliver(ev);
    this.#recent.push({ ev, prev });
    if (this.#recent.length > RECENT) this.#recent.splice(0, this.#recent.length - RECENT);
    this.#post({ t: 'event', ev, prev });
  }

  #ephemeral(type, data) {
    this.#emit(type, data);
    this.#post({ t: 'eph', type, data });
  }

  // A poll carries who is typing now; anyone who dropped out stopped typing.
  #typingSnapshot(list) {
    const now = new Set();
    for (const t of list) {
      now.add(t.conversation_id + '|' + t.user_id);
      this.#ephemeral('typing', t);
    }
    for (const key of this.#typing) {
      if (now.has(key)) continue;
      const [conversation_id, user_id] = key.split('|');
      this.#ephemeral('typing', { conversation_id, user_id, typing: false, expires_at: new Date().toISOString() });
    }
    this.#typing = now;
  }

  // ---- every tab: position and delivery ---------------------------------

  #posKey() {
    return 'confab.position.' + this.#user.id;
  }

  #setPos(pos) {
    this.#pos = pos;
    sessionStorage.setItem(this.#posKey(), pos);
  }

  // First position of a new tab: the app loads state now; events after it apply on top.
  #adopt(cursor) {
    this.#setPos(cursor);
    this.#emit('sync', { reason: 'start', cursor });
  }

  #deliver(ev) {
    this.#setPos(ev.position);
    this.#seen.add(ev.position);
    if (this.#seen.size > RECENT) this.#seen.delete(this.#seen.values().next().value);
    const r = this.debug.received;
    r.push(ev.position);
    if (r.length > 5000) r.splice(0, r.length - 5000);
    this.#emit('event', ev);
    this.#emit(ev.type, ev.data, ev);
  }

  #reset(cursor) {
    this.#clearPending();
    this.#recent = [];
    this.#seen.clear(); // a reset store may hand out the same positions again
    this.#setPos(cursor);
    if (this.#leader) this.#post({ t: 'reset', cursor });
    this.#emit('reset', { cursor });
    this.#emit('sync', { reason: 'reset', cursor });
  }

  // ---- followers ----------------------------------------------------------

  #onRelay(m) {
    if (!this.#running) return;
    if (this.#leader) {
      // A tab joined or noticed a gap: send what it missed from our recent
      // events, found by the position it has. Not found: all we have, and the
      // follower sees from the first one's `prev` that it cannot catch up.
      if (m.t === 'hello') {
        let events = [];
        if (m.after !== null && m.after !== this.#pos) {
          const i = this.#recent.findIndex((r) => r.ev.position === m.after);
          events = i >= 0 ? this.#recent.slice(i + 1) : this.#recent;
        }
        this.#post({ t: 'replay', to: m.tab, position: this.#pos, events, status: this.#statusDetail() });
      }
      return;
    }
    switch (m.t) {
      case 'leader': // a new leader: tell it where we are
        this.#post({ t: 'hello', tab: this.#tabId, after: this.#pos });
        break;
      case 'replay':
        if (m.to === this.#tabId) this.#onReplay(m);
        break;
      case 'event':
        this.#fromLeader(m.ev, m.prev);
        break;
      case 'eph':
        this.#emit(m.type, m.data);
        break;
      case 'reset':
        this.#reset(m.cursor);
        break;
      case 'status':
        this.#followStatus(m.status);
        break;
    }
  }

  #onReplay({ position, events, status }) {
    this.#followStatus(status);
    if (this.#pos === null) {
      if (position !== null) this.#adopt(position);
      return;
    }
    const fresh = events.filter((r) => !this.#seen.has(r.ev.position));
    const at = fresh.findIndex((r) => r.prev === this.#pos);
    if (at > 0) fresh.splice(0, at);
    // The leader no longer has what we missed: jump to where it is.
    if (fresh.length && at < 0) this.#skipTo(fresh[0].prev);
    else if (!fresh.length && position !== null && position !== this.#pos && !this.#seen.has(position)) this.#skipTo(position);
    for (const r of fresh) this.#fromLeader(r.ev, r.prev);
  }

  // An event the leader relayed, with the position before it in the stream.
  #fromLeader(ev, prev) {
    if (this.#pos === null && prev !== null) this.#adopt(prev);
    if (this.#seen.has(ev.position)) return;
    if (prev !== this.#pos) {
      // A gap (we joined or reloaded while events flowed): hold this one and
      // ask the leader for the missing ones; give up after a moment.
      this.#pending.push({ ev, prev });
      if (!this.#gapTimer) {
        this.#post({ t: 'hello', tab: this.#tabId, after: this.#pos });
        this.#gapTimer = setTimeout(() => this.#skipTo(this.#pending[0].prev), 1500);
      }
      return;
    }
    this.#deliver(ev);
    // Held events that now follow on (the leader relays in order).
    for (let i; (i = this.#pending.findIndex((r) => r.prev === this.#pos)) >= 0; ) {
      const [r] = this.#pending.splice(i, 1);
      if (!this.#seen.has(r.ev.position)) this.#deliver(r.ev);
    }
    this.#pending = this.#pending.filter((r) => !this.#seen.has(r.ev.position));
    if (!this.#pending.length) this.#clearPending();
  }

  // Jumps over events we cannot get: the app reloads state so nothing is missing.
  #skipTo(pos) {
    const held = this.#pending;
    this.#clearPending();
    this.#setPos(pos);
    this.#emit('sync', { reason: 'gap', cursor: pos });
    for (const r of held) this.#fromLeader(r.ev, r.prev);
  }

  #clearPending() {
    this.#pending = [];
    clearTimeout(this.#gapTimer);
    this.#gapTimer = 0;
  }

  #followStatus(s) {
    if (s) this.#leaderStatus = s;
    // A new tab takes the leader's position as its own (see #adopt).
    if (s?.position != null && this.#pos === null) this.#adopt(s.position);
    const l = this.#leaderStatus;
    if (!navigator.onLine) this.#setStatus('offline');
    else if (l) this.#setStatus(l.status, l.retryAt, l.transport);
  }

  // ---- plumbing -----------------------------------------------------------

  #statusDetail() {
    return { status: this.#status, retryAt: this.#retryAt, transport: this.#transport, leader: this.#leader, position: this.#pos };
  }

  #setStatus(status, retryAt = null, transport = this.#transport) {
    if (status === 'live') transport = 'sse';
    if (status === 'reconnecting' || status === 'offline' || status === 'stopped') transport = null;
    if (status === this.#status && retryAt === this.#retryAt && transport === this.#transport) return;
    this.#status = status;
    this.#retryAt = retryAt;
    this.#transport = transport;
    const detail = this.#statusDetail();
    if (this.#leader) this.#post({ t: 'status', status: detail });
    this.#emit('status', detail);
  }

  #post(m) {
    try {
      this.#channel?.postMessage(m);
    } catch {
      // closed channel during stop(): nothing to relay to
    }
  }

  #emit(type, detail, event) {
    const e = new CustomEvent(type, { detail });
    e.event = event;
    this.dispatchEvent(e);
  }
}
