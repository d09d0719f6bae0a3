/**
 * app.js — the confab chat UI, the entry module: sign-in, state sync and the
 * wiring of events to the views. Plain DOM, no framework, no build step; the
 * browser loads the ES modules as they are:
 *   confab.js         networking and real-time delivery (usable without this UI)
 *   state.js          the one Confab connection and what the UI knows (state, names)
 *   ui.js             DOM helpers ($, h, toast, announce, time formats)
 *   status.js         the connection pill
 *   conversations.js  the conversation list
 *   chat.js           the open conversation: messages, header, history
 *   compose.js        sending (outbox, retries) and our own typing pings
 *   typing.js         others' typing indicators
 *   read.js           read markers and receipts
 *   people.js         people search, new conversations and groups, members, leaving
 *
 * Stable selectors (for e2e tests; keep them when restyling):
 *   #status[data-status]        connecting | live | longpoll | reconnecting | offline | stopped (hidden until signed in);
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
 *   #leave-btn (asks first: #leave-dialog with #leave-text, #leave-cancel, #leave-confirm)  #back-btn (narrow screens)
 *   #messages (role=log, the scrolling box) > #message-list >
 *     li.message[data-id][data-client-msg-id][data-seq][data-state="pending|queued|sent|failed"][data-sender-id]
 *       (.mine for own; .sender, .body, .time, .receipt). data-id is absent until the server
 *       confirmed the message. queued: it failed for want of a connection and is sent again by
 *       itself when the connection is back; failed: refused for good, with button.retry.
 *     li.system                 a line about the conversation: "Bob Stone left", "Dave Ross joined",
 *                               "You added Dave Ross" (from member.joined / member.left)
 *   #messages[data-complete]    set once the whole history is loaded (shows "Beginning of the conversation")
 *   #history-status             "Loading older messages…" while scrolling back
 *   #typing                     "alice is typing…" for the open conversation (empty when nobody)
 *   #composer (textarea)  #send-btn  #composer-form
 *   #toast                      transient errors
 *   document.title              "(N) confab" while N messages are unread
 *   window.confabDebug          {status, position, isLeader, transport, tabId, received: [position, ...]}
 * The open conversation is also in the URL: #c=<conversation id>. Opening one from the list adds
 * a history entry (Back returns to the list); a #c= typed or followed opens that conversation.
 */
import { $, toast } from './ui.js';
import { confab, state, api, remember, rememberMembers, me, nameOf, loadNames, forgetNames } from './state.js';
import { renderStatus } from './status.js';
import { convEls, renderConversations, upsertConversation, refreshConversation, removeConversation } from './conversations.js';
import { openConversation, closeConversation, renderHeader, addNote } from './chat.js';
import { applyMessage, resendQueued } from './compose.js';
import { applyTyping } from './typing.js';
import { applyRead } from './read.js';
import './people.js';

window.confabDebug = confab.debug;

// ---- sign-in --------------------------------------------------------------

function boot() {
  const user = confab.user;
  if (!user) return showLogin();
  if (state.me && state.me.id !== user.id) return location.reload(); // another tab switched accounts
  if (state.me) return;
  state.me = user;
  loadNames();
  remember(user.id, user);
  $('#status').hidden = false;
  $('#login-view').hidden = true;
  $('#chat-view').hidden = false;
  $('#me-box').hidden = false;
  $('#me-name').textContent = user.display_name || user.username;
  confab.start(); // emits 'sync' once it knows where the event stream stands
}

function showLogin() {
  forgetNames();
  state.me = null;
  state.active = null;
  state.convs.clear();
  state.outbox.clear();
  state.notes.clear();
  state.online.clear();
  convEls.clear();
  $('#conversation-list').replaceChildren();
  $('#message-list').replaceChildren();
  document.title = 'confab';
  $('#status').hidden = true; // nothing to connect before signing in
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

confab.on('status', (s) => {
  renderStatus(s);
  // Presence is only true while connected: a new stream sends who is online now.
  if (s.status !== 'live' && state.online.size) {
    state.online.clear();
    renderConversations();
    renderHeader();
  }
  if (s.status === 'live' || s.status === 'longpoll') resendQueued();
});

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
// Presence comes for contacts when the stream starts (a snapshot), then as
// it changes; the server tells new contacts about each other when a
// conversation is created or joined.
confab.on('conversation.created', ({ conversation: c }) =>
  later(() => {
    if (state.convs.has(c.id)) return;
    upsertConversation(c);
  }),
);
confab.on('member.joined', ({ conversation_id: conv, user_id: user, by }) =>
  later(async () => {
    const known = state.convs.has(conv);
    await refreshConversation(conv); // learns the newcomer's name
    if (!known || user === me()) return;
    // `by`, when the server says who added them; else we know only our own adds.
    const adder = by ?? state.addedBy.get(conv + '|' + user);
    addNote(conv, adder ? `${nameOf(adder)} added ${nameOf(user)}` : `${nameOf(user)} joined`);
  }),
);
confab.on('member.left', ({ conversation_id: conv, user_id: user, by }) =>
  later(() => {
    if (user === me()) return removeConversation(conv);
    if (!state.convs.has(conv)) return;
    addNote(conv, by && by !== user ? `${nameOf(by)} removed ${nameOf(user)}` : `${nameOf(user)} left`);
    refreshConversation(conv);
  }),
);
confab.on('read', (d) => later(() => applyRead(d)));
confab.on('typing', (t) => applyTyping(t));
confab.on('presence', ({ user_id, online }) => {
  online ? state.online.add(user_id) : state.online.delete(user_id);
  renderConversations();
  renderHeader();
});

// ---- start ----------------------------------------------------------------------------

renderStatus({ status: confab.status, retryAt: null, transport: null });
boot();
