/** typing.js — who is typing where, from `typing` events. */
import { $ } from './ui.js';
import { state, me, nameOf } from './state.js';
import { convEls, fillConversation } from './conversations.js';

export function applyTyping({ conversation_id: conv, user_id: user, typing, expires_at }) {
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

export function dropTyping(conv, user) {
  const users = state.typing.get(conv);
  if (!users?.has(user)) return;
  clearTimeout(users.get(user));
  users.delete(user);
  renderTypingFor(conv);
}

export const typingIn = (conv) => [...(state.typing.get(conv)?.keys() ?? [])].map(nameOf);

export function typingText(names) {
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
}

export function renderTypingFor(conv) {
  const li = convEls.get(conv);
  const c = state.convs.get(conv);
  if (li && c) fillConversation(li, c);
  if (state.active?.id === conv) renderTyping();
}

export function renderTyping() {
  const names = state.active ? typingIn(state.active.id) : [];
  $('#typing').textContent = names.length ? typingText(names) : '';
}

