/** chat.js — the open conversation: its messages, header and history. */
import { $, h, toast, timeFmt } from './ui.js';
import { state, api, path, me, nameOf, others, titleOf } from './state.js';
import { convEls, renderConversations, removeConversation } from './conversations.js';
import { stopTyping } from './compose.js';
import { renderTyping } from './typing.js';
import { markReadSoon } from './read.js';

// ---- the open conversation ------------------------------------------------------

/** The message list of the open conversation. One per opening; dropped on switch. */
export class MessageView {
  constructor(c) {
    this.id = c.id;
    this.box = $('#messages'); // the scrolling log
    this.ul = $('#message-list');
    this.ul.replaceChildren();
    this.box.removeAttribute('data-complete');
    // {msg, state: 'pending'|'queued'|'sent'|'failed', error, el} or {note, state: 'note', el}
    this.entries = [];
    this.byId = new Map();
    this.byClient = new Map();
    this.hasMore = false;
    this.loadingOlder = false;
    // Highest message seq we told the server we read (or that was read already).
    this.markedSeq = c.unread_count === 0 ? (c.last_message?.seq ?? 0) : 0;
    for (const o of state.outbox.values()) if (o.msg.conversation_id === c.id) paintMessage(this.#add(o), c.id);
    for (const n of state.notes.get(c.id) ?? []) this.#add(noteEntry(n));
    this.#order();
  }

  /** A line about the conversation itself ("Bob left"). */
  addNote(n) {
    this.#keepScroll('auto', () => {
      this.#add(noteEntry(n));
      this.#order();
    });
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
    this.box.setAttribute('aria-busy', 'true'); // no screen reader announcement for a whole page
    try {
      const page = await api('GET', path(this.id, '/messages?limit=50'));
      if (state.active !== this) return;
      this.hasMore = page.has_more;
      this.apply(page.messages, 'bottom');
      this.box.toggleAttribute('data-complete', !this.hasMore);
    } catch (err) {
      if (err.status === 404) removeConversation(this.id);
      else toast(`Could not load messages: ${err.message}`);
    } finally {
      this.box.removeAttribute('aria-busy');
    }
    this.fillViewport();
  }

  // Scroll-back: the page before the oldest message we hold.
  async loadOlder() {
    const first = this.entries.find((e) => e.state === 'sent');
    if (!this.hasMore || this.loadingOlder || !first) return;
    this.loadingOlder = true;
    $('#history-status').textContent = 'Loading older messages…';
    this.box.setAttribute('aria-busy', 'true');
    try {
      const page = await api('GET', path(this.id, `/messages?limit=50&before=${encodeURIComponent(first.msg.id)}`));
      if (state.active !== this) return;
      this.hasMore = page.has_more;
      this.apply(page.messages, 'prepend');
    } catch (err) {
      toast(`Could not load older messages: ${err.message}`);
    } finally {
      this.loadingOlder = false;
      this.box.removeAttribute('aria-busy');
      if (state.active === this) {
        $('#history-status').textContent = '';
        this.box.toggleAttribute('data-complete', !this.hasMore);
      }
    }
    this.fillViewport();
  }

  // Until the list can scroll, nobody can scroll to the top to ask for more.
  fillViewport() {
    if (state.active === this && this.hasMore && this.box.scrollHeight <= this.box.clientHeight + 20) this.loadOlder();
  }

  paintReceipts() {
    for (const e of this.entries) if (!e.note) paintMessage(e, this.id);
  }

  #add(e) {
    this.entries.push(e);
    if (e.note) return e;
    if (e.msg.id) this.byId.set(e.msg.id, e);
    if (e.msg.client_msg_id && e.msg.sender_id === me()) this.byClient.set(e.msg.client_msg_id, e);
    return e;
  }

  // Confirmed messages by seq, each note after the message it followed;
  // unconfirmed ones after them, oldest first.
  #order() {
    const key = (e) => (e.note ? e.note.after + 0.5 : e.state === 'sent' ? e.msg.seq : Number.MAX_SAFE_INTEGER);
    const at = (e) => Date.parse(e.note ? e.note.at : e.msg.created_at);
    this.entries.sort((a, b) => key(a) - key(b) || at(a) - at(b));
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
    const ul = this.box;
    const atBottom = ul.scrollHeight - ul.scrollTop - ul.clientHeight < 80;
    const fromBottom = ul.scrollHeight - ul.scrollTop;
    fn();
    if (mode === 'prepend') ul.scrollTop = ul.scrollHeight - fromBottom;
    else if (mode === 'bottom' || atBottom) ul.scrollTop = ul.scrollHeight;
  }
}

export function paintMessage(e, convId) {
  const m = e.msg;
  if (!e.el) {
    e.el = h(
      'li',
      { class: 'message' },
      h('div', { class: 'meta' }, h('span', { class: 'sender', dir: 'auto' }), h('time', { class: 'time' })),
      h('div', { class: 'body', dir: 'auto' }),
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
  else if (e.state === 'queued') footer.replaceChildren(h('span', { class: 'pending-note', text: 'Waiting for the connection; it will be sent then.' }));
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

const noteEntry = (n) => ({ note: n, state: 'note', el: h('li', { class: 'system', dir: 'auto', text: n.text }) });

/** Adds a line about the conversation ("Bob left") after its messages so far. */
export function addNote(convId, text) {
  const n = { text, after: state.convs.get(convId)?.last_message?.seq ?? 0, at: new Date().toISOString() };
  if (!state.notes.has(convId)) state.notes.set(convId, []);
  state.notes.get(convId).push(n);
  if (state.active?.id === convId) state.active.addNote(n);
}

// The open conversation is in the URL (#c=<id>). Opening one from the list
// adds a history entry, so Back (a phone's back gesture) returns to the list
// instead of leaving the app; a hash typed or linked opens that conversation.
const hashOf = (id) => '#c=' + encodeURIComponent(id);

/** Opens a conversation; push: a new history entry (the user opened it, from the list). */
export async function openConversation(id, { focus, push = false }) {
  const c = state.convs.get(id);
  if (!c) return;
  if (state.active?.id !== id) stopTyping();
  const fromList = !state.active;
  const view = (state.active = new MessageView(c));
  if (location.hash !== hashOf(id)) {
    if (push && fromList) history.pushState({ conv: id }, '', hashOf(id));
    else history.replaceState(history.state?.conv ? { conv: id } : null, '', hashOf(id));
  }
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

export function closeConversation() {
  const id = state.active?.id;
  stopTyping();
  state.active = null;
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  document.body.dataset.view = 'list';
  $('#chat-pane').hidden = true;
  $('#empty-chat').hidden = false;
  $('#message-list').replaceChildren();
  renderConversations();
  return id;
}

// Back to the list: the history entry we added, if any, so Back and the
// button agree; popstate then closes the conversation.
$('#back-btn').addEventListener('click', () => {
  if (history.state?.conv) return history.back();
  const id = closeConversation();
  convEls.get(id)?.querySelector('button').focus();
});

/** Shows what the URL says: Back, Forward, or a #c=<id> typed or followed. */
export function followURL() {
  const want = new URLSearchParams(location.hash.slice(1)).get('c');
  if (want && want !== state.active?.id && state.convs.has(want)) openConversation(want, { focus: false });
  else if (!want && state.active) convEls.get(closeConversation())?.querySelector('button').focus();
}
window.addEventListener('popstate', followURL);
window.addEventListener('hashchange', followURL);

export function renderHeader() {
  const c = state.active && state.convs.get(state.active.id);
  if (!c) return;
  $('#chat-title').textContent = titleOf(c);
  $('#chat-title').title = titleOf(c); // the whole name, when it is cut short
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

