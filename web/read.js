/** read.js — read markers: ours to the server, others' as receipts. */
import { state, api, path, me, visible } from './state.js';
import { renderConversations, refreshConversation } from './conversations.js';

// ---- read state ---------------------------------------------------------------------

export function markReadSoon() {
  clearTimeout(markReadSoon.timer);
  markReadSoon.timer = setTimeout(markRead, 250); // one POST for a burst of messages
}

export function markRead() {
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

export function applyRead({ conversation_id: conv, user_id: user, message_id }) {
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

