// connections.js: the connections of one audience: each destination with its
// type, setup, active version and pending version with a live countdown.

import { h, show, field, fmtTime, fmtCountdown } from './dom.js';
import { call, connPath, errorText, serverNow } from './api.js';
import { canWrite, go, onLeave } from './state.js';

const LAST = 'idsync.last';

// lastAudience remembers the space and audience of this tab's last look.
export function lastAudience() {
  try { return JSON.parse(sessionStorage.getItem(LAST)) || {}; } catch { return {}; }
}

export async function connectionsScreen(el, params, alive) {
  const last = lastAudience();
  const space = params.space ?? last.space ?? '';
  const audience = params.audience ?? last.audience ?? '';
  const spaceIn = h('input', { name: 'space', value: space, required: true, autocomplete: 'off', spellcheck: 'false' });
  const audIn = h('input', { name: 'audience', value: audience, required: true, autocomplete: 'off', spellcheck: 'false' });
  const results = h('div', { id: 'connections-results' });
  const form = h('form', { class: 'inline', id: 'audience-form', onsubmit: (e) => {
    e.preventDefault();
    go('connections', { space: spaceIn.value.trim(), audience: audIn.value.trim() });
  } },
  field('Space id', spaceIn), field('Audience id', audIn),
  h('button', { type: 'submit', class: 'primary', text: 'Show connections' }));
  show(el, h('h1', { text: 'Connections' }), form, results);
  if (!space || !audience) {
    show(results, h('p', { text: 'Enter a space id and an audience id to see the destinations the audience is connected to.' }));
    return;
  }
  await listConnections(results, space, audience, alive);
}

async function listConnections(el, space, audience, alive) {
  const heading = h('h2', {}, 'Audience ', h('code', { text: audience }), ' in space ', h('code', { text: space }));
  show(el, heading, h('p', { text: 'Loading…' }));
  const r = await call('GET', connPath(space, audience));
  if (!alive()) return;
  if (r.status !== 200) {
    show(el, heading, h('p', { class: 'error', role: 'alert', text: problemText(r) }));
    return;
  }
  sessionStorage.setItem(LAST, JSON.stringify({ space, audience }));
  const newBtn = newConnectionForm(space, audience);
  const conns = r.body.connections;
  if (conns.length === 0) {
    show(el, heading, h('p', { text: 'This audience has no connections yet.' }), newBtn);
    return;
  }
  const countdowns = [];
  const rows = conns.map(c => {
    const a = c.active, p = c.pending;
    const cfg = (p && p.config) || (a && a.config) || {};
    let pendingCell = h('td', { text: '—' });
    if (p) {
      const cd = h('span', { class: 'countdown', 'data-effective-at': p.effective_at });
      countdowns.push(cd);
      pendingCell = h('td', {},
        h('span', { text: p.deleted ? `deletion (version ${p.version})` : `version ${p.version}` }),
        h('br'), h('span', { text: `effective ${fmtTime(p.effective_at)} ` }), cd);
    }
    const dest = c.destination_id;
    return h('tr', {},
      h('th', { scope: 'row' }, h('code', { text: dest })),
      h('td', { text: c.invalid ? 'unreadable' : (cfg.destination_type || '—') }),
      h('td', { text: cfg.setup || '—' }),
      h('td', {}, a ? [h('span', { text: `version ${a.version}` }), h('br'), h('span', { class: 'muted', text: `since ${fmtTime(a.effective_at)}` })] : '—'),
      pendingCell,
      h('td', { class: 'actions' },
        h('a', { href: '#/edit?' + new URLSearchParams({ space, audience, destination: dest }), text: canWrite() ? 'Edit' : 'View', 'aria-label': `${canWrite() ? 'Edit' : 'View'} ${dest}` }),
        ' ',
        h('a', { href: '#/history?' + new URLSearchParams({ space, audience, destination: dest }), text: 'History', 'aria-label': `History of ${dest}` })),
      c.invalid ? h('td', { class: 'error', text: c.invalid }) : null);
  });
  const table = h('table', { class: 'list', id: 'connections' },
    h('caption', { class: 'sr-only', text: 'Connections of the audience' }),
    h('thead', {}, h('tr', {}, ['Destination', 'Type', 'Setup', 'Active', 'Pending', 'Actions'].map(t => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, rows));
  show(el, heading, table, newBtn);
  const stop = tick(countdowns, () => { if (alive()) listConnections(el, space, audience, alive); });
  onLeave(stop);
}

// tick updates countdowns every second; when one has passed its time,
// then() runs once (the caller reads what changed). It returns the function
// that stops it; a stopped tick never calls then().
export function tick(els, then) {
  if (els.length === 0) return () => {};
  let stopped = false;
  let later = 0;
  const update = () => {
    for (const e of els) {
      const ms = Date.parse(e.dataset.effectiveAt) - serverNow();
      e.textContent = `(${fmtCountdown(ms)})`;
      if (ms <= -1000 && !stopped && then) {
        stopped = true;
        clearInterval(id);
        later = setTimeout(then, 500);
      }
    }
  };
  const id = setInterval(update, 1000);
  update();
  return () => { stopped = true; clearInterval(id); clearTimeout(later); };
}

function newConnectionForm(space, audience) {
  if (!canWrite()) return h('p', { class: 'muted', text: 'Your token has read scope: you can look at connections, not create them.' });
  const dest = h('input', { name: 'destination', required: true, pattern: '[a-z0-9][a-z0-9_\\-]{0,63}', autocomplete: 'off', spellcheck: 'false' });
  return h('form', { class: 'inline', id: 'new-connection', onsubmit: (e) => {
    e.preventDefault();
    go('edit', { space, audience, destination: dest.value.trim(), new: '1' });
  } },
  field('New destination id', dest, 'lower-case letters, digits, _ and -'),
  h('button', { type: 'submit', text: 'Connect a destination' }));
}

// problemText is the API's message with its field problems.
export function problemText(r) {
  const ps = (r.body && r.body.problems) || [];
  return [errorText(r), ...ps.map(p => `${p.field ? p.field + ': ' : ''}${p.message}`)].join(' — ');
}
