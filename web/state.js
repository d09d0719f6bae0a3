/** state.js — the one connection and what the UI knows, shared by the UI modules. */
import { Confab } from './confab.js';

export const confab = new Confab();

export const state = {
  me: null,
  convs: new Map(), // id → conversation, as the API returns it
  users: new Map(), // id → {username, display_name}, learned from member lists; kept (see remember)
  active: null, // MessageView of the open conversation
  typing: new Map(), // conversation id → Map(user id → expiry timer)
  readBy: new Map(), // conversation id → Map(user id → message id), from live `read` events
  online: new Set(), // user ids, from `presence`
  outbox: new Map(), // client_msg_id → unconfirmed own message, kept across conversation switches
  draft: new Map(), // user id → user, the group being assembled
  notes: new Map(), // conversation id → [{text, after, at}], "Bob left" lines seen this session
  addedBy: new Map(), // "conversation|user" → who added them, for adds made from this tab
};

export const me = () => state.me?.id;
export const nameOf = (id) => (id === me() ? 'You' : state.users.get(id)?.display_name || state.users.get(id)?.username || 'Someone');
export const visible = () => document.visibilityState === 'visible';
export const viewing = (id) => state.active?.id === id && visible();
export const api = (...args) => confab.api(...args);
export const path = (id, rest = '') => `/v1/conversations/${encodeURIComponent(id)}${rest}`;

// Names outlive membership: someone who left a group is no longer in its
// member list, but their messages still need a name. Names seen are kept in
// localStorage (per signed-in user, newest last, bounded).
const NAMES_KEPT = 2000;
const namesKey = () => 'confab.names.' + me();
let saving = false;

export function remember(id, u) {
  const old = state.users.get(id);
  if (old && old.username === u.username && old.display_name === u.display_name) return;
  state.users.delete(id);
  state.users.set(id, { username: u.username, display_name: u.display_name });
  // Saved at once (a reload may come any moment), once for a whole member list.
  if (!saving) queueMicrotask(saveNames);
  saving = true;
}

function saveNames() {
  saving = false;
  if (!me()) return;
  const all = [...state.users];
  try {
    localStorage.setItem(namesKey(), JSON.stringify(all.slice(-NAMES_KEPT)));
  } catch {
    // storage full or disabled: names just last for this page
  }
}

/** Loads the names kept for the signed-in user (after state.me is set). */
export function loadNames() {
  try {
    const kept = JSON.parse(localStorage.getItem(namesKey())) ?? [];
    for (const [id, u] of kept) if (!state.users.has(id)) state.users.set(id, u);
  } catch {
    // nothing kept, or not ours to parse
  }
}

/** Forgets the kept names (signing out). */
export function forgetNames() {
  if (me()) localStorage.removeItem(namesKey());
  state.users.clear();
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
