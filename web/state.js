/** state.js — the one connection and what the UI knows, shared by the UI modules. */
import { Confab } from './confab.js';

export const confab = new Confab();

export const state = {
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

export const me = () => state.me?.id;
export const nameOf = (id) => (id === me() ? 'You' : state.users.get(id)?.display_name || state.users.get(id)?.username || 'Someone');
export const visible = () => document.visibilityState === 'visible';
export const viewing = (id) => state.active?.id === id && visible();
export const api = (...args) => confab.api(...args);
export const path = (id, rest = '') => `/v1/conversations/${encodeURIComponent(id)}${rest}`;

export function remember(id, u) {
  state.users.set(id, { username: u.username, display_name: u.display_name });
}

export function rememberMembers(c) {
  for (const m of c.members) remember(m.user_id, m);
}

export const others = (c) => c.members.filter((m) => m.user_id !== me());

export function titleOf(c) {
  if (c.title) return c.title;
  const names = others(c).map((m) => m.display_name || m.username);
  return names.length ? names.join(', ') : 'Just you';
}
