/** conversations.js — the conversation list in the sidebar. */
import { $, h, shortTime } from './ui.js';
import { state, api, path, nameOf, viewing, others, titleOf, rememberMembers } from './state.js';
import { openConversation, closeConversation, renderHeader } from './chat.js';
import { typingIn, typingText } from './typing.js';

const activity = (c) => Date.parse(c.last_message?.created_at ?? c.created_at);

export function upsertConversation(c) {
  const old = state.convs.get(c.id);
  // Keep a newer last message than the copy fetched (events may have passed it).
  if (old?.last_message && (!c.last_message || old.last_message.seq > c.last_message.seq)) c.last_message = old.last_message;
  rememberMembers(c);
  state.convs.set(c.id, c);
  renderConversations();
  if (state.active?.id === c.id) renderHeader();
}

export async function refreshConversation(id) {
  try {
    upsertConversation(await api('GET', path(id)));
  } catch (err) {
    if (err.status === 404) removeConversation(id); // not (or no longer) a member
  }
}

export function removeConversation(id) {
  state.convs.delete(id);
  state.typing.delete(id);
  if (state.active?.id === id) closeConversation();
  renderConversations();
}

export const convEls = new Map(); // id → li, reused so focus survives re-renders

export function convElement(id) {
  return h(
    'li',
    { class: 'conversation', dataset: { id } },
    h(
      'button',
      { type: 'button', class: 'conversation-open' },
      h('span', { class: 'avatar', 'aria-hidden': 'true' }),
      h('span', { class: 'conv-main' }, h('span', { class: 'conv-title', dir: 'auto' }), h('span', { class: 'conv-preview', dir: 'auto' })),
      h('span', { class: 'conv-side' }, h('time', { class: 'conv-time' })),
    ),
  );
}

export function renderConversations() {
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
  // The tab's title counts what is unread, for a tab in the background.
  const unread = list.reduce((n, c) => n + (viewing(c.id) ? 0 : c.unread_count), 0);
  document.title = unread ? `(${unread > 99 ? '99+' : unread}) confab` : 'confab';
}

export function fillConversation(li, c) {
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
  if (li) openConversation(li.dataset.id, { focus: true, push: true });
});
