/**
 * app.js — the confab chat UI. Plain DOM, no framework; all networking and
 * real-time delivery is in confab.js.
 *
 * Stable selectors (for e2e tests; keep them when restyling):
 *   #status[data-status]        connecting | live | longpoll | reconnecting | offline | stopped;
 *                               also data-transport (sse|longpoll|"") and data-leader (true|false);
 *                               text "Live", "Long-poll", "Reconnecting… (retry in Ns)", "Offline"
 *   #login-form  #username  #password  #display-name  #login-btn  #register-btn  #login-error
 *   #me-name  #logout-btn
 *   #new-direct                 people search (sidebar); results in #user-results:
 *     li.user-result[data-user-id][data-username] > button.start-direct | button.add-to-group
 *   #group-draft  #group-members (li.chip > button.remove-chip)  #group-title  #create-group-btn
 *   #conversation-list > li.conversation[data-id][data-unread][data-kind]
 *       > button.conversation-open (.conv-title, .conv-preview, .conv-time, .unread badge only when unread > 0)
 *       li.conversation.active (+ aria-current on its button) is the open one
 *   #chat-title  #chat-members  #add-member (search; results #add-member-results li.user-result > button.add-member)
 *   #leave-btn  #back-btn (narrow screens)
 *   #messages > li.message[data-id][data-client-msg-id][data-seq][data-state="pending|sent|failed"][data-sender-id]
 *       (.mine for own; .sender, .body, .time, .receipt; button.retry when failed).
 *       data-id is absent until the server confirmed the message.
 *   #messages[data-complete]    set once the whole history is loaded (shows "Beginning of the conversation")
 *   #history-status             "Loading older messages…" while scrolling back
 *   #typing                     "alice is typing…" for the open conversation (empty when nobody)
 *   #composer (textarea)  #send-btn  #composer-form
 *   #toast                      transient errors
 *   window.confabDebug          {status, lastSeq, isLeader, transport, tabId, received: [seq, ...]}
 * The open conversation is also in the URL: #c=<conversation id>.
 */
import { Confab, uuid } from './confab.js';

const confab = new Confab();
window.confabDebug = confab.debug;

const $ = (sel) => document.querySelector(sel);

/** h('li', {class, dataset, text, onclick, ...attrs}, ...children) */
function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  e.append(...kids.flat().filter((k) => k != null && k !== false));
  return e;
}

const state = {
  me: null,
  convs: new Map(), // id → conversation, as the API returns it
  users: new Map(), // id → {username, display_name}, learned from member lists
  active: null, // MessageView of the open conversation
  typing: new Map(), // conversation id → Map(user id → expiry timer)
  readBy: new Map(), // conversation id → Map(user id → message id), from live `read` events
  online: new Set(), // user ids, from `presence`
  outbox: new Map(), // client_msg_id → unconfirmed own message, kept across conversation switches
  draft: new Map(), // user id → user, the group being assembled
};

const me = () => state.me?.id;
const nameOf = (id) => (id === me() ? 'You' : state.users.get(id)?.display_name || state.users.get(id)?.username || 'Someone');
const visible = () => document.visibilityState === 'visible';
const viewing = (id) => state.active?.id === id && visible();
const api = (...args) => confab.api(...args);
const path = (id, rest = '') => `/v1/conversations/${encodeURIComponent(id)}${rest}`;

function toast(text) {
  const t = $('#toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 5000);
}

function announce(text) {
  $('#announcer').textContent = text;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
function shortTime(iso) {
  const d = new Date(iso);
  return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}

// ---- sign-in --------------------------------------------------------------

function boot() {
  const user = confab.user;
  if (!user) return showLogin();
  if (state.me && state.me.id !== user.id) return location.reload(); // another tab switched accounts
  if (state.me) return;
  state.me = user;
  remember(user.id, user);
  $('#login-view').hidden = true;
  $('#chat-view').hidden = false;
  $('#me-box').hidden = false;
  $('#me-name').textContent = user.display_name || user.username;
  confab.start(); // emits 'sync' once it knows where the event stream stands
}

function showLogin() {
  state.me = null;
  state.active = null;
  state.convs.clear();
  state.outbox.clear();
  convEls.clear();
  $('#conversation-list').replaceChildren();
  $('#messages').replaceChildren();
  $('#chat-view').hidden = true;
  $('#me-box').hidden = true;
  $('#login-view').hidden = false;
  $('#username').focus();
}

const loginErrors = {
  invalid_credentials: 'Wrong username or password.',
  username_taken: 'That username is taken.',
  network: 'Cannot reach the server.',
};

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const register = e.submitter?.id === 'register-btn';
  const username = $('#username').value.trim();
  const password = $('#password').value;
  const buttons = [$('#login-btn'), $('#register-btn')];
  buttons.forEach((b) => (b.disabled = true));
  $('#login-error').textContent = '';
  try {
    if (register) await confab.register(username.toLowerCase(), password, $('#display-name').value.trim());
    else await confab.login(username, password);
    $('#password').value = '';
  } catch (err) {
    $('#login-error').textContent =
      err.code === 'rate_limited' ? `Too many attempts; try again in ${err.retryAfter || 30} s.` : loginErrors[err.code] || err.message;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
});

$('#logout-btn').addEventListener('click', () => confab.logout());
confab.on('login', boot);
confab.on('logout', showLogin);

// ---- connection status ----------------------------------------------------

const statusText = {
  connecting: 'Connecting…',
  live: 'Live',
  longpoll: 'Long-poll',
  offline: 'Offline',
  stopped: 'Not connected',
};
const statusHelp = {
  live: 'Real-time over Server-Sent Events',
  longpoll: 'Degraded: streaming is blocked on this network, using long-polling',
  reconnecting: 'Connection lost; retrying',
  offline: 'Your device is offline',
};

function renderStatus({ status, retryAt, transport }) {
  const pill = $('#status');
  pill.dataset.status = status;
  pill.dataset.transport = transport || '';
  pill.dataset.leader = String(confab.isLeader);
  pill.title = statusHelp[status] || 'Connection status';
  clearInterval(renderStatus.timer);
  const paint = () => {
    let text = statusText[status] || status;
    if (status === 'reconnecting') {
      const s = retryAt ? Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) : 0;
      text = retryAt && s > 0 ? `Reconnecting… (retry in ${s}s)` : 'Reconnecting…';
    }
    pill.querySelector('.status-text').textContent = text;
  };
  paint();
  if (status === 'reconnecting' && retryAt) renderStatus.timer = setInterval(paint, 1000);
}
confab.on('status', renderStatus);

// ---- state sync -------------------------------------------------------------
// 'sync' (first start, server reset, or a gap a follower tab could not fill)
// reloads everything. Events that arrive meanwhile wait in a queue and are
// applied on top of the fresh snapshot; every handler is idempotent, so an
// event the snapshot already includes changes nothing.

let syncQueue = null;
let syncAgain = false;
const later = (fn) => (syncQueue ? syncQueue.push(fn) : fn());

async function sync() {
  if (syncQueue) {
    syncAgain = true;
    return;
  }
  syncQueue = [];
  try {
    do {
      syncAgain = false;
      await loadAll();
    } while (syncAgain);
  } catch (err) {
    if (state.me) {
      toast(`Could not load conversations (${err.message}); retrying…`);
      setTimeout(sync, 3000);
    }
  } finally {
    const queued = syncQueue;
    syncQueue = null;
    queued.forEach((fn) => fn());
  }
}

async function loadAll() {
  const { conversations } = await api('GET', '/v1/conversations');
  state.convs.clear();
  for (const c of conversations) {
    rememberMembers(c);
    state.convs.set(c.id, c);
  }
  renderConversations();
  const want = state.active?.id ?? new URLSearchParams(location.hash.slice(1)).get('c');
  if (want && state.convs.has(want)) await openConversation(want, { focus: false });
  else if (state.active) closeConversation();
}

confab.on('sync', sync);
confab.on('message.created', ({ message }) => later(() => applyMessage(message)));
confab.on('conversation.created', ({ conversation }) => later(() => !state.convs.has(conversation.id) && upsertConversation(conversation)));
confab.on('member.joined', ({ conversation_id }) => later(() => refreshConversation(conversation_id)));
confab.on('member.left', ({ conversation_id, user_id }) =>
  later(() => (user_id === me() ? removeConversation(conversation_id) : refreshConversation(conversation_id))),
);
confab.on('read', (d) => later(() => applyRead(d)));
confab.on('typing', (t) => applyTyping(t));
confab.on('presence', ({ user_id, online }) => {
  online ? state.online.add(user_id) : state.online.delete(user_id);
  renderConversations();
  renderHeader();
});

// ---- conversations ------------------------------------------------------------

function remember(id, u) {
  state.users.set(id, { username: u.username, display_name: u.display_name });
}

function rememberMembers(c) {
  for (const m of c.members) remember(m.user_id, m);
}

const others = (c) => c.members.filter((m) => m.user_id !== me());

function titleOf(c) {
  if (c.title) return c.title;
  const names = others(c).map((m) => m.display_name || m.username);
  return names.length ? names.join(', ') : 'Just you';
}

const activity = (c) => Date.parse(c.last_message?.created_at ?? c.created_at);

function upsertConversation(c) {
  const old = state.convs.get(c.id);
  // Keep a newer last message than the copy fetched (events may have passed it).
  if (old?.last_message && (!c.last_message || old.last_message.seq > c.last_message.seq)) c.last_message = old.last_message;
  rememberMembers(c);
  state.convs.set(c.id, c);
  renderConversations();
  if (state.active?.id === c.id) renderHeader();
}

async function refreshConversation(id) {
  try {
    upsertConversation(await api('GET', path(id)));
  } catch (err) {
    if (err.status === 404) removeConversation(id); // not (or no longer) a member
  }
}

function removeConversation(id) {
  state.convs.delete(id);
  state.typing.delete(id);
  if (state.active?.id === id) closeConversation();
  renderConversations();
}

const convEls = new Map(); // id → li, reused so focus survives re-renders

function convElement(id) {
  return h(
    'li',
    { class: 'conversation', dataset: { id } },
    h(
      'button',
      { type: 'button', class: 'conversation-open' },
      h('span', { class: 'avatar', 'aria-hidden': 'true' }),
      h('span', { class: 'conv-main' }, h('span', { class: 'conv-title' }), h('span', { class: 'conv-preview' })),
      h('span', { class: 'conv-side' }, h('time', { class: 'conv-time' })),
    ),
  );
}

function renderConversations() {
  const ul = $('#conversation-list');
  const list = [...state.convs.values()].sort((a, b) => activity(b) - activity(a));
  let prev = null;
  for (const c of list) {
    let li = convEls.get(c.id);
    if (!li) convEls.set(c.id, (li = convElement(c.id)));
    fillConversation(li, c);
    const want = prev ? prev.nextElementSibling : ul.firstElementChild;
    if (want !== li) ul.insertBefore(li, want);
    prev = li;
  }
  for (const [id, li] of convEls) {
    if (state.convs.has(id)) continue;
    li.remove();
    convEls.delete(id);
  }
  $('#no-conversations').hidden = list.length > 0;
}

function fillConversation(li, c) {
  const title = titleOf(c);
  const unread = viewing(c.id) ? 0 : c.unread_count;
  const typers = typingIn(c.id);
  const last = c.last_message;
  const peer = c.kind === 'direct' ? others(c)[0] : null;
  li.dataset.kind = c.kind;
  li.dataset.unread = String(unread);
  li.classList.toggle('active', state.active?.id === c.id);
  li.classList.toggle('online', !!peer && state.online.has(peer.user_id));
  const btn = li.firstElementChild;
  if (state.active?.id === c.id) btn.setAttribute('aria-current', 'true');
  else btn.removeAttribute('aria-current');
  btn.querySelector('.avatar').textContent = title.slice(0, 1).toUpperCase();
  btn.querySelector('.conv-title').textContent = title;
  const preview = btn.querySelector('.conv-preview');
  preview.textContent = typers.length ? typingText(typers) : last ? `${nameOf(last.sender_id)}: ${last.body}` : 'No messages yet';
  preview.classList.toggle('is-typing', typers.length > 0);
  const time = btn.querySelector('.conv-time');
  time.textContent = last ? shortTime(last.created_at) : '';
  time.dateTime = last?.created_at ?? '';
  let badge = btn.querySelector('.unread');
  if (unread > 0) {
    badge ??= btn.querySelector('.conv-side').appendChild(h('span', { class: 'unread' }));
    badge.textContent = unread > 99 ? '99+' : String(unread);
    badge.setAttribute('aria-label', `${unread} unread`);
  } else badge?.remove();
}

$('#conversation-list').addEventListener('click', (e) => {
  const li = e.target.closest('.conversation');
  if (li) openConversation(li.dataset.id, { focus: true });
});

// ---- the open conversation ------------------------------------------------------

/** The message list of the open conversation. One per opening; dropped on switch. */
class MessageView {
  constructor(c) {
    this.id = c.id;
    this.ul = $('#messages');
    this.ul.replaceChildren();
    this.ul.removeAttribute('data-complete');
    this.entries = []; // {msg, state: 'pending'|'sent'|'failed', error, el, order}
    this.byId = new Map();
    this.byClient = new Map();
    this.hasMore = false;
    this.loadingOlder = false;
    // Highest message seq we told the server we read (or that was read already).
    this.markedSeq = c.unread_count === 0 ? (c.last_message?.seq ?? 0) : 0;
    for (const o of state.outbox.values()) if (o.msg.conversation_id === c.id) paintMessage(this.#add(o), c.id);
    this.#order();
  }

  /** Server messages (a page or one event): insert or confirm, keeping seq order. */
  apply(messages, scroll = 'auto') {
    this.#keepScroll(scroll, () => {
      for (const m of messages) {
        let e = this.byId.get(m.id);
        if (!e && m.client_msg_id && m.sender_id === me()) e = this.byClient.get(m.client_msg_id);
        if (e) {
          e.msg = m;
          e.state = 'sent';
          e.error = null;
        } else e = this.#add({ msg: m, state: 'sent' });
        this.byId.set(m.id, e);
        paintMessage(e, this.id);
      }
      this.#order();
    });
  }

  /** An optimistic own message (or one from the outbox). */
  addPending(o) {
    this.#keepScroll('bottom', () => {
      paintMessage(this.#add(o), this.id);
      this.#order();
    });
  }

  entryByClient(id) {
    return this.byClient.get(id);
  }

  async loadLatest() {
    this.ul.setAttribute('aria-busy', 'true'); // no screen reader announcement for a whole page
    try {
      const page = await api('GET', path(this.id, '/messages?limit=50'));
      if (state.active !== this) return;
      this.hasMore = page.has_more;
      this.apply(page.messages, 'bottom');
      this.ul.toggleAttribute('data-complete', !this.hasMore);
    } catch (err) {
      if (err.status === 404) removeConversation(this.id);
      else toast(`Could not load messages: ${err.message}`);
    } finally {
      this.ul.removeAttribute('aria-busy');
    }
    this.fillViewport();
  }

  // Scroll-back: the page before the oldest message we hold.
  async loadOlder() {
    const first = this.entries.find((e) => e.state === 'sent');
    if (!this.hasMore || this.loadingOlder || !first) return;
    this.loadingOlder = true;
    $('#history-status').textContent = 'Loading older messages…';
    this.ul.setAttribute('aria-busy', 'true');
    try {
      const page = await api('GET', path(this.id, `/messages?limit=50&before=${encodeURIComponent(first.msg.id)}`));
      if (state.active !== this) return;
      this.hasMore = page.has_more;
      this.apply(page.messages, 'prepend');
    } catch (err) {
      toast(`Could not load older messages: ${err.message}`);
    } finally {
      this.loadingOlder = false;
      this.ul.removeAttribute('aria-busy');
      if (state.active === this) {
        $('#history-status').textContent = '';
        this.ul.toggleAttribute('data-complete', !this.hasMore);
      }
    }
    this.fillViewport();
  }

  // Until the list can scroll, nobody can scroll to the top to ask for more.
  fillViewport() {
    if (state.active === this && this.hasMore && this.ul.scrollHeight <= this.ul.clientHeight + 20) this.loadOlder();
  }

  paintReceipts() {
    for (const e of this.entries) paintMessage(e, this.id);
  }

  #add(e) {
    this.entries.push(e);
    if (e.msg.id) this.byId.set(e.msg.id, e);
    if (e.msg.client_msg_id && e.msg.sender_id === me()) this.byClient.set(e.msg.client_msg_id, e);
    return e;
  }

  // Confirmed messages by seq; unconfirmed ones after them, oldest first.
  #order() {
    const key = (e) => (e.state === 'sent' ? e.msg.seq : Number.MAX_SAFE_INTEGER);
    this.entries.sort((a, b) => key(a) - key(b) || Date.parse(a.msg.created_at) - Date.parse(b.msg.created_at));
    let prev = null;
    for (const e of this.entries) {
      const want = prev ? prev.nextElementSibling : this.ul.firstElementChild;
      if (want !== e.el) this.ul.insertBefore(e.el, want);
      prev = e.el;
    }
  }

  // 'bottom': always scroll down; 'prepend': keep what the reader sees in place;
  // 'auto': follow new messages only when the reader is already at the bottom.
  #keepScroll(mode, fn) {
    const ul = this.ul;
    const atBottom = ul.scrollHeight - ul.scrollTop - ul.clientHeight < 80;
    const fromBottom = ul.scrollHeight - ul.scrollTop;
    fn();
    if (mode === 'prepend') ul.scrollTop = ul.scrollHeight - fromBottom;
    else if (mode === 'bottom' || atBottom) ul.scrollTop = ul.scrollHeight;
  }
}

function paintMessage(e, convId) {
  const m = e.msg;
  if (!e.el) {
    e.el = h(
      'li',
      { class: 'message' },
      h('div', { class: 'meta' }, h('span', { class: 'sender' }), h('time', { class: 'time' })),
      h('div', { class: 'body' }),
      h('div', { class: 'footer' }),
    );
  }
  const el = e.el;
  el.classList.toggle('mine', m.sender_id === me());
  el.dataset.state = e.state;
  el.dataset.senderId = m.sender_id;
  if (m.id) el.dataset.id = m.id;
  if (m.seq) el.dataset.seq = String(m.seq);
  if (m.client_msg_id) el.dataset.clientMsgId = m.client_msg_id;
  el.querySelector('.sender').textContent = nameOf(m.sender_id);
  const time = el.querySelector('.time');
  time.dateTime = m.created_at;
  time.textContent = timeFmt.format(new Date(m.created_at));
  el.querySelector('.body').textContent = m.body;

  const footer = el.querySelector('.footer');
  if (e.state === 'pending') footer.replaceChildren(h('span', { class: 'pending-note', text: 'Sending…' }));
  else if (e.state === 'failed')
    footer.replaceChildren(
      h('span', { class: 'error', text: `Not sent${e.error ? ` (${e.error})` : ''}. ` }),
      h('button', { type: 'button', class: 'retry', text: 'Retry' }),
    );
  else {
    const readers = [...(state.readBy.get(convId) ?? [])].filter(([u, id]) => id === m.id && u !== me()).map(([u]) => nameOf(u));
    const direct = state.convs.get(convId)?.kind === 'direct';
    footer.replaceChildren(readers.length ? h('span', { class: 'receipt', text: direct ? 'Seen' : `Seen by ${readers.join(', ')}` }) : '');
  }
}

async function openConversation(id, { focus }) {
  const c = state.convs.get(id);
  if (!c) return;
  if (state.active?.id !== id) stopTyping();
  const view = (state.active = new MessageView(c));
  history.replaceState(null, '', '#c=' + encodeURIComponent(id));
  document.body.dataset.view = 'chat';
  $('#empty-chat').hidden = true;
  $('#chat-pane').hidden = false;
  $('#history-status').textContent = '';
  renderHeader();
  renderTyping();
  renderConversations();
  if (focus) $('#composer').focus();
  await view.loadLatest();
  markReadSoon();
}

function closeConversation() {
  stopTyping();
  state.active = null;
  history.replaceState(null, '', location.pathname + location.search);
  document.body.dataset.view = 'list';
  $('#chat-pane').hidden = true;
  $('#empty-chat').hidden = false;
  $('#messages').replaceChildren();
  renderConversations();
}

$('#back-btn').addEventListener('click', () => {
  const id = state.active?.id;
  closeConversation();
  convEls.get(id)?.querySelector('button').focus();
});

function renderHeader() {
  const c = state.active && state.convs.get(state.active.id);
  if (!c) return;
  $('#chat-title').textContent = titleOf(c);
  const members = [...others(c), ...c.members.filter((m) => m.user_id === me())];
  const names = members.map((m) => {
    const n = m.user_id === me() ? 'you' : m.display_name || m.username;
    return state.online.has(m.user_id) ? `${n} (online)` : n;
  });
  $('#chat-members').textContent = c.kind === 'group' ? `${c.members.length} members: ${names.join(', ')}` : names.join(' and ');
  $('#group-tools').hidden = c.kind !== 'group';
}

$('#messages').addEventListener('scroll', () => {
  if ($('#messages').scrollTop < 80) state.active?.loadOlder();
});

// ---- sending --------------------------------------------------------------------

function applyMessage(m) {
  const c = state.convs.get(m.conversation_id);
  if (!c) return refreshConversation(m.conversation_id); // e.g. just added to a group; 404 → not ours
  if (m.sender_id === me()) state.outbox.delete(m.client_msg_id);
  // The snapshot counted everything up to its last message; count only newer ones.
  if (!c.last_message || m.seq > c.last_message.seq) {
    c.last_message = m;
    if (m.sender_id !== me() && !viewing(c.id)) {
      c.unread_count += 1;
      announce(`New message from ${nameOf(m.sender_id)} in ${titleOf(c)}`);
    }
  }
  dropTyping(c.id, m.sender_id); // sending ends typing
  if (state.active?.id === c.id) {
    state.active.apply([m], m.sender_id === me() ? 'bottom' : 'auto');
    markReadSoon();
  }
  renderConversations();
}

async function deliver(o) {
  o.state = 'pending';
  o.error = null;
  const view = state.active?.id === o.msg.conversation_id ? state.active : null;
  const entry = view?.entryByClient(o.msg.client_msg_id);
  if (entry) paintMessage(entry, view.id);
  try {
    // Same client_msg_id on every retry: the server stores the message once.
    const m = await api('POST', path(o.msg.conversation_id, '/messages'), { body: o.msg.body, client_msg_id: o.msg.client_msg_id }, { timeout: 15000 });
    applyMessage(m); // the event may come before or after this; both are fine
  } catch (err) {
    if (!state.outbox.has(o.msg.client_msg_id)) return; // confirmed by the event meanwhile
    o.state = 'failed';
    o.error = err.code === 'network' ? 'offline' : err.detail || err.title || err.message;
    const e = state.active?.entryByClient(o.msg.client_msg_id);
    if (e) paintMessage(e, state.active.id);
  }
}

function send(body) {
  const view = state.active;
  if (!view) return;
  const o = {
    state: 'pending',
    msg: { id: null, seq: null, conversation_id: view.id, sender_id: me(), body, client_msg_id: uuid(), created_at: new Date().toISOString() },
  };
  state.outbox.set(o.msg.client_msg_id, o);
  view.addPending(o);
  // The server ends our typing indicator when the message lands; posting
  // typing:false as well would only spend the typing rate limit.
  typingSentAt = 0;
  typingConv = null;
  deliver(o);
}

$('#messages').addEventListener('click', (e) => {
  const btn = e.target.closest('.retry');
  const o = btn && state.outbox.get(btn.closest('.message').dataset.clientMsgId);
  if (o) deliver(o);
});

const composer = $('#composer');
composer.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('#composer-form').requestSubmit();
  }
});
$('#composer-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const body = composer.value.trim();
  if (!body) return;
  composer.value = '';
  send(body);
});

// ---- typing -----------------------------------------------------------------------

let typingSentAt = 0;
let typingConv = null;

composer.addEventListener('input', () => {
  const id = state.active?.id;
  if (!id || !composer.value.trim()) return;
  // The indicator expires by itself after ~5 s: re-announce every 2 s while typing.
  if (typingConv === id && Date.now() - typingSentAt < 2000) return;
  typingConv = id;
  typingSentAt = Date.now();
  postTyping(id, true);
});
composer.addEventListener('blur', () => stopTyping());

function stopTyping() {
  if (typingConv && Date.now() - typingSentAt < 6000) postTyping(typingConv, false);
  typingConv = null;
  typingSentAt = 0;
}

function postTyping(id, typing) {
  api('POST', path(id, '/typing'), { typing }).catch(() => {}); // best effort; 429 just means "already told"
}

function applyTyping({ conversation_id: conv, user_id: user, typing, expires_at }) {
  if (user === me()) return;
  if (typing) {
    let users = state.typing.get(conv);
    if (!users) state.typing.set(conv, (users = new Map()));
    clearTimeout(users.get(user));
    // expires_at is the server's clock; clamp so a skewed local clock neither
    // hides the indicator at once nor keeps it forever.
    const ttl = Math.min(8000, Math.max(1000, Date.parse(expires_at) - Date.now()));
    users.set(user, setTimeout(() => dropTyping(conv, user), ttl));
    renderTypingFor(conv);
  } else dropTyping(conv, user);
}

function dropTyping(conv, user) {
  const users = state.typing.get(conv);
  if (!users?.has(user)) return;
  clearTimeout(users.get(user));
  users.delete(user);
  renderTypingFor(conv);
}

const typingIn = (conv) => [...(state.typing.get(conv)?.keys() ?? [])].map(nameOf);

function typingText(names) {
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
}

function renderTypingFor(conv) {
  const li = convEls.get(conv);
  const c = state.convs.get(conv);
  if (li && c) fillConversation(li, c);
  if (state.active?.id === conv) renderTyping();
}

function renderTyping() {
  const names = state.active ? typingIn(state.active.id) : [];
  $('#typing').textContent = names.length ? typingText(names) : '';
}

// ---- read state ---------------------------------------------------------------------

function markReadSoon() {
  clearTimeout(markReadSoon.timer);
  markReadSoon.timer = setTimeout(markRead, 250); // one POST for a burst of messages
}

function markRead() {
  const view = state.active;
  const c = view && state.convs.get(view.id);
  if (!c || !visible()) return;
  const last = c.last_message;
  c.unread_count = 0;
  renderConversations();
  if (!last || last.seq <= view.markedSeq) return;
  view.markedSeq = last.seq;
  if (last.sender_id === me()) return; // the server marks your own messages read
  api('POST', path(c.id, '/read'), { message_id: last.id }).catch(() => {});
}

function applyRead({ conversation_id: conv, user_id: user, message_id }) {
  const c = state.convs.get(conv);
  if (!c) return;
  if (user === me()) {
    // Read on another tab or device. Only the server knows the count below
    // an older marker, so ask it unless everything is read.
    if (c.last_message?.id === message_id) c.unread_count = 0;
    else refreshConversation(conv);
    renderConversations();
    return;
  }
  if (!state.readBy.has(conv)) state.readBy.set(conv, new Map());
  state.readBy.get(conv).set(user, message_id);
  if (state.active?.id === conv) state.active.paintReceipts();
}

document.addEventListener('visibilitychange', () => {
  if (visible()) markReadSoon();
  renderConversations();
});

// ---- people search: new conversations and members --------------------------------------

/** Wires a username search box to a result list; actions(user) returns the buttons of a row. */
function peopleSearch(input, results, actions) {
  let timer = 0;
  let asked = 0;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(run, 200);
  });
  async function run() {
    const q = input.value.trim().toLowerCase();
    const n = ++asked;
    if (!q) return results.replaceChildren();
    try {
      const { users } = await api('GET', '/v1/users?q=' + encodeURIComponent(q));
      if (n !== asked) return; // a newer search is under way
      const rows = users
        .filter((u) => u.id !== me())
        .map((u) =>
          h(
            'li',
            { class: 'user-result', dataset: { userId: u.id, username: u.username } },
            h('span', { class: 'user-name' }, u.display_name, ' ', h('span', { class: 'hint', text: '@' + u.username })),
            h('span', { class: 'actions' }, actions(u)),
          ),
        );
      results.replaceChildren(...(rows.length ? rows : [h('li', { class: 'hint empty', text: 'Nobody found' })]));
    } catch (err) {
      results.replaceChildren(h('li', { class: 'error', text: err.message }));
    }
  }
  return () => {
    input.value = '';
    results.replaceChildren();
  };
}

const clearNewSearch = peopleSearch($('#new-direct'), $('#user-results'), (u) => [
  h('button', { type: 'button', class: 'start-direct', text: 'Chat', 'aria-label': `Chat with ${u.username}`, onclick: () => startDirect(u) }),
  h('button', { type: 'button', class: 'add-to-group secondary', text: '+ Group', 'aria-label': `Add ${u.username} to a new group`, onclick: () => addToDraft(u) }),
]);

async function startDirect(u) {
  try {
    const c = await api('POST', '/v1/conversations', { kind: 'direct', member_ids: [u.id] });
    clearNewSearch();
    upsertConversation(c);
    openConversation(c.id, { focus: true });
  } catch (err) {
    toast(`Could not start the conversation: ${err.message}`);
  }
}

function addToDraft(u) {
  remember(u.id, u);
  state.draft.set(u.id, u);
  renderDraft();
  $('#new-direct').focus();
}

function renderDraft() {
  $('#group-draft').hidden = state.draft.size === 0;
  $('#group-members').replaceChildren(
    ...[...state.draft.values()].map((u) =>
      h(
        'li',
        { class: 'chip', dataset: { userId: u.id } },
        u.display_name || u.username,
        h('button', {
          type: 'button',
          class: 'remove-chip ghost',
          text: '×',
          'aria-label': `Remove ${u.username}`,
          onclick: () => {
            state.draft.delete(u.id);
            renderDraft();
          },
        }),
      ),
    ),
  );
}

$('#create-group-btn').addEventListener('click', async () => {
  const body = { kind: 'group', member_ids: [...state.draft.keys()] };
  const title = $('#group-title').value.trim();
  if (title) body.title = title;
  try {
    const c = await api('POST', '/v1/conversations', body);
    state.draft.clear();
    $('#group-title').value = '';
    renderDraft();
    clearNewSearch();
    upsertConversation(c);
    openConversation(c.id, { focus: true });
  } catch (err) {
    toast(`Could not create the group: ${err.message}`);
  }
});

const clearAddSearch = peopleSearch($('#add-member'), $('#add-member-results'), (u) => [
  h('button', { type: 'button', class: 'add-member', text: 'Add', 'aria-label': `Add ${u.username}`, onclick: () => addMember(u) }),
]);

async function addMember(u) {
  const id = state.active?.id;
  if (!id) return;
  try {
    upsertConversation(await api('POST', path(id, '/members'), { user_id: u.id }));
    clearAddSearch();
  } catch (err) {
    toast(`Could not add ${u.username}: ${err.message}`);
  }
}

$('#leave-btn').addEventListener('click', async () => {
  const id = state.active?.id;
  if (!id) return;
  try {
    await api('DELETE', path(id, `/members/${encodeURIComponent(me())}`));
    removeConversation(id);
  } catch (err) {
    toast(`Could not leave: ${err.message}`);
  }
});

// ---- start ----------------------------------------------------------------------------

renderStatus({ status: confab.status, retryAt: null, transport: null });
boot();
