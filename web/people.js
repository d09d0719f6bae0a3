/** people.js — people search: new conversations, groups, members, leaving. */
import { $, h, toast } from './ui.js';
import { confab, state, api, path, me, remember, titleOf } from './state.js';
import { upsertConversation, removeConversation } from './conversations.js';
import { openConversation } from './chat.js';

// ---- people search: new conversations and members --------------------------------------

/** Wires a username search box to a result list; actions(user) returns the buttons of a row. */
export function peopleSearch(input, results, actions) {
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
            h('span', { class: 'user-name' }, h('span', { dir: 'auto', text: u.display_name }), ' ', h('span', { class: 'hint', text: '@' + u.username })),
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

export async function startDirect(u) {
  try {
    const c = await api('POST', '/v1/conversations', { kind: 'direct', member_ids: [u.id] });
    clearNewSearch();
    upsertConversation(c);
    openConversation(c.id, { focus: true, push: true });
  } catch (err) {
    toast(`Could not start the conversation: ${err.message}`);
  }
}

export function addToDraft(u) {
  remember(u.id, u);
  state.draft.set(u.id, u);
  renderDraft();
  $('#new-direct').focus();
}

export function renderDraft() {
  $('#group-draft').hidden = state.draft.size === 0;
  $('#group-members').replaceChildren(
    ...[...state.draft.values()].map((u) =>
      h(
        'li',
        { class: 'chip', dataset: { userId: u.id } },
        h('span', { dir: 'auto', text: u.display_name || u.username }),
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
    openConversation(c.id, { focus: true, push: true });
  } catch (err) {
    toast(`Could not create the group: ${err.message}`);
  }
});

const clearAddSearch = peopleSearch($('#add-member'), $('#add-member-results'), (u) => [
  h('button', { type: 'button', class: 'add-member', text: 'Add', 'aria-label': `Add ${u.username}`, onclick: () => addMember(u) }),
]);

export async function addMember(u) {
  const id = state.active?.id;
  if (!id) return;
  remember(u.id, u);
  state.addedBy.set(id + '|' + u.id, me()); // the member.joined line: "You added …"
  try {
    upsertConversation(await api('POST', path(id, '/members'), { user_id: u.id }));
    clearAddSearch();
  } catch (err) {
    toast(`Could not add ${u.username}: ${err.message}`);
  }
}

// Leaving is not undone by the leaver (someone else must add them back): ask first.
$('#leave-btn').addEventListener('click', () => {
  const c = state.active && state.convs.get(state.active.id);
  if (!c) return;
  const dialog = $('#leave-dialog');
  $('#leave-text').textContent = `You will no longer get the messages of “${titleOf(c)}”. Only a member can add you back.`;
  dialog.dataset.id = c.id;
  dialog.returnValue = '';
  dialog.showModal();
});

$('#leave-dialog').addEventListener('close', async () => {
  const dialog = $('#leave-dialog');
  const id = dialog.dataset.id;
  if (dialog.returnValue !== 'leave' || !state.convs.has(id)) return $('#leave-btn').focus();
  try {
    await api('DELETE', path(id, `/members/${encodeURIComponent(me())}`));
    removeConversation(id);
  } catch (err) {
    toast(`Could not leave: ${err.message}`);
  }
});

