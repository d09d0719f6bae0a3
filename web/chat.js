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

export function paintMessage(e, convId) {
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

export async function openConversation(id, { focus }) {
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

export function closeConversation() {
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

export function renderHeader() {
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

