// history.js: every version of a connection with who (token name) and when,
// a readable diff between any two, and "restore this version" (an ordinary
// edit: PUT of that version's configuration with If-Match, the same delay
// and the same confirmation).

import { h, show, field, fmtTime, status } from './dom.js';
import { call, connPath, errorText } from './api.js';
import { canWrite, go } from './state.js';
import { confirmDialog, effectText } from './edit.js';

export async function historyScreen(el, params, alive) {
  const { space, audience, destination } = params;
  const heading = h('h1', {}, 'History of ', h('code', { text: destination || '' }));
  const crumbs = h('p', { class: 'muted' }, 'Audience ', h('code', { text: audience || '' }), ' in space ', h('code', { text: space || '' }), ' · ',
    h('a', { href: '#/connections?' + new URLSearchParams({ space, audience }), text: 'all connections' }), ' · ',
    h('a', { href: '#/edit?' + new URLSearchParams({ space, audience, destination }), text: 'edit' }));
  show(el, heading, crumbs, h('p', { text: 'Loading…' }));
  const [r, cur] = await Promise.all([
    call('GET', connPath(space, audience, destination) + '/history'),
    call('GET', connPath(space, audience, destination))]);
  if (!alive()) return;
  if (r.status !== 200) {
    show(el, heading, crumbs, h('p', { class: 'error', role: 'alert', text: errorText(r) }));
    return;
  }
  const entries = r.body.entries;
  const result = h('div', { id: 'restore-result', role: 'status' });
  const rows = entries.map((e, i) => h('tr', { 'data-version': e.version },
    h('th', { scope: 'row', text: String(e.version) }),
    h('td', { text: e.action === 'delete' ? 'deleted' : (i === entries.length - 1 || !e.old ? 'created' : 'edited') }),
    h('td', {}, h('code', { text: e.actor })),
    h('td', { text: fmtTime(e.at) }),
    h('td', { text: fmtTime(e.effective_at) }),
    h('td', { text: e.new ? `${e.new.destination_type}, ${e.new.setup}` : '—' }),
    h('td', {}, e.new && canWrite() && i > 0
      ? h('button', { type: 'button', class: 'restore', 'data-version': e.version, text: `Restore version ${e.version}`,
        onclick: () => restore(e, entries[0].version, cur, { space, audience, destination }, result) })
      : (i === 0 ? h('span', { class: 'muted', text: 'newest' }) : null))));
  const table = h('table', { class: 'list', id: 'history' },
    h('caption', { class: 'sr-only', text: 'Versions, newest first' }),
    h('thead', {}, h('tr', {}, ['Version', 'Change', 'By', 'At', 'Takes effect', 'Configuration', ''].map(x => h('th', { scope: 'col', text: x })))),
    h('tbody', {}, rows));

  // Compare any two versions.
  const byVersion = new Map(entries.map(e => [String(e.version), e]));
  const pick = (name, sel) => h('select', { name }, entries.map(e => h('option', { value: String(e.version), selected: String(e.version) === sel, text: `version ${e.version}` })));
  const a = pick('from', String((entries[1] || entries[0]).version));
  const b = pick('to', String(entries[0].version));
  const diffBox = h('div', { id: 'diff' });
  const compare = () => renderDiff(diffBox, diffConfigs(byVersion.get(a.value).new, byVersion.get(b.value).new), `version ${a.value}`, `version ${b.value}`);
  a.addEventListener('change', compare);
  b.addEventListener('change', compare);
  compare();
  show(el, heading, crumbs,
    canWrite() ? null : h('p', { class: 'muted', text: 'Your token has read scope: you can compare versions, not restore them.' }),
    table, result,
    h('section', { class: 'card', 'aria-labelledby': 'compare-h' },
      h('h2', { id: 'compare-h', text: 'Compare two versions' }),
      h('div', { class: 'inline' }, field('From', a), field('To', b)),
      diffBox));
}

// restore saves an earlier version's configuration as a new edit, on
// condition that the newest version is still the one the history showed
// (a tombstone too: restoring a deleted connection is guarded the same way).
async function restore(entry, newest, cur, k, result) {
  const effect = 'Restoring is an ordinary edit. ' + effectText(cur.status === 200 ? cur.body : null);
  confirmDialog(`Restore version ${entry.version}?`, effect, 'Restore', async () => {
    const r = await call('PUT', connPath(k.space, k.audience, k.destination), entry.new, { 'If-Match': `"${newest}"` });
    if (r.status === 200 || r.status === 201) {
      status(`Restored version ${entry.version} as version ${r.body.version}.`);
      go('edit', k);
      return;
    }
    show(result, h('p', { class: 'error', role: 'alert', text: r.status === 412
      ? 'Someone else edited this connection since this page was loaded: nothing was restored. Reload the history and try again.'
      : errorText(r) }));
  });
}

// flatten turns a configuration into path → value lines.
function flatten(v, path, out) {
  if (v === null || v === undefined) return out;
  if (Array.isArray(v)) {
    v.forEach((x, i) => flatten(x, `${path}[${i}]`, out));
    if (v.length === 0) out.set(path, '[]');
  } else if (typeof v === 'object') {
    for (const k of Object.keys(v).sort()) flatten(v[k], path ? `${path}.${k}` : k, out);
  } else {
    out.set(path, JSON.stringify(v));
  }
  return out;
}

// diffConfigs lists what changes from configuration a to b, field by field.
// Identifier rows are compared as whole rows ("email → EMAIL, all").
export function diffConfigs(a, b) {
  const rowsOf = (c) => (c && c.identifiers || []).map(m => `${m.segment} → ${m.destination}, ${String(m.strategy).replace('_', ' ')}`);
  const strip = (c) => c ? { ...c, identifiers: undefined } : null;
  const fa = flatten(strip(a), '', new Map()), fb = flatten(strip(b), '', new Map());
  const out = [];
  if (!a && b) out.push({ kind: 'note', text: 'created (nothing before)' });
  if (a && !b) out.push({ kind: 'note', text: 'deleted' });
  for (const k of new Set([...fa.keys(), ...fb.keys()])) {
    const x = fa.get(k), y = fb.get(k);
    if (x === y) continue;
    if (x === undefined) out.push({ kind: 'added', text: `${k}: ${y}` });
    else if (y === undefined) out.push({ kind: 'removed', text: `${k}: ${x}` });
    else out.push({ kind: 'changed', text: `${k}: ${x} → ${y}` });
  }
  const ra = rowsOf(a), rb = rowsOf(b);
  for (const r of ra) if (!rb.includes(r)) out.push({ kind: 'removed', text: `identifier ${r}` });
  for (const r of rb) if (!ra.includes(r)) out.push({ kind: 'added', text: `identifier ${r}` });
  if (ra.length === rb.length && ra.every(r => rb.includes(r)) && ra.join('|') !== rb.join('|')) {
    out.push({ kind: 'changed', text: 'identifier order changed' });
  }
  return out;
}

// renderDiff shows a diff's lines, marked for sight and for screen readers.
export function renderDiff(el, lines, from, to) {
  const sign = { added: '+ ', removed: '− ', changed: '~ ', note: '' };
  const word = { added: 'added', removed: 'removed', changed: 'changed', note: '' };
  show(el, h('p', { class: 'muted', text: `From ${from} to ${to}:` }),
    lines.length === 0 ? h('p', { text: 'No difference.' })
      : h('ul', { class: 'diff' }, lines.map(l => h('li', { class: l.kind },
        h('span', { 'aria-hidden': 'true', text: sign[l.kind] }), word[l.kind] ? h('span', { class: 'sr-only', text: word[l.kind] + ': ' }) : null,
        h('span', { text: l.text })))));
}
