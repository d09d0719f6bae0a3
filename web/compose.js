/** compose.js — the composer: sending (with the outbox) and our own typing pings. */
import { $, announce } from './ui.js';
import { uuid } from './confab.js';
import { confab, state, api, path, me, nameOf, viewing, titleOf } from './state.js';
import { renderConversations, refreshConversation } from './conversations.js';
import { paintMessage } from './chat.js';
import { dropTyping } from './typing.js';
import { markReadSoon } from './read.js';

// ---- sending --------------------------------------------------------------------

export function applyMessage(m) {
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

// A failure the same request may not meet next time: no network, the server
// down or busy, a timeout. Such a message waits ('queued') and goes out by
// itself when the connection is back. Anything else (the conversation is
// gone, the body is refused) would fail again: the user decides, with Retry.
const transient = (err) => err.status === 0 || err.status === 408 || err.status === 429 || err.status >= 500;
const connected = () => confab.status === 'live' || confab.status === 'longpoll';

export async function deliver(o) {
  clearTimeout(o.timer);
  if (!state.outbox.has(o.msg.client_msg_id)) return; // confirmed meanwhile
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
    if (transient(err)) {
      o.state = 'queued';
      o.tries = (o.tries ?? 0) + 1;
      // resendQueued sends it when the connection comes back; while it seems
      // up (it may not have noticed yet), try again after a while as well.
      const wait = err.retryAfter ? err.retryAfter * 1000 : Math.min(30000, 1000 * 2 ** o.tries);
      if (connected()) o.timer = setTimeout(() => deliver(o), wait);
    } else {
      o.state = 'failed';
      o.error = err.detail || err.title || err.message;
    }
    const e = state.active?.entryByClient(o.msg.client_msg_id);
    if (e) paintMessage(e, state.active.id);
  }
}

/** Sends every message that waits for the connection (it is back). */
export function resendQueued() {
  for (const o of state.outbox.values()) if (o.state === 'queued') deliver(o);
}

export function send(body) {
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

export function stopTyping() {
  if (typingConv && Date.now() - typingSentAt < 6000) postTyping(typingConv, false);
  typingConv = null;
  typingSentAt = 0;
}

export function postTyping(id, typing) {
  api('POST', path(id, '/typing'), { typing }).catch(() => {}); // best effort; 429 just means "already told"
}

