/** status.js — the connection pill. */
import { $ } from './ui.js';
import { confab } from './state.js';

const statusText = {
  connecting: 'Connecting…',
  live: 'Live',
  longpoll: 'Long-poll',
  offline: 'Offline',
  stopped: 'Not connected',
};
const statusHelp = {
  live: 'Real-time over Server-Sent Events',
  longpoll: 'Degraded: streaming is blocked on this network, using long-polling',
  reconnecting: 'Connection lost; retrying',
  offline: 'Your device is offline',
};

let timer = 0;

export function renderStatus({ status, retryAt, transport }) {
  const pill = $('#status');
  pill.dataset.status = status;
  pill.dataset.transport = transport || '';
  pill.dataset.leader = String(confab.isLeader);
  pill.title = statusHelp[status] || 'Connection status';
  clearInterval(timer);
  const paint = () => {
    let text = statusText[status] || status;
    if (status === 'reconnecting') {
      const s = retryAt ? Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) : 0;
      text = retryAt && s > 0 ? `Reconnecting… (retry in ${s}s)` : 'Reconnecting…';
    }
    pill.querySelector('.status-text').textContent = text;
  };
  paint();
  if (status === 'reconnecting' && retryAt) timer = setInterval(paint, 1000);
}
