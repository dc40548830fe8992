// preview.js: the sample profile and the rendering of POST /v1/preview's
// answer: the records, and mapping by mapping which identifiers were picked
// and why.

import { h, show, fmtTime } from './dom.js';

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

// sampleEvent is a generated "entered" event of a profile with several
// emails, phones and mobile ids, added at different times, so that the
// strategies visibly differ.
export function sampleEvent(space, audience, now) {
  const day = 24 * 3600 * 1000;
  const at = (daysAgo) => new Date(now - daysAgo * day).toISOString().replace(/\.\d+Z$/, 'Z');
  const n = Math.floor(Math.random() * 9000) + 1000;
  return {
    message_id: `console-sample-${n}`,
    timestamp: at(0),
    space_id: ID.test(space || '') ? space : 'spa_sample',
    audience_id: ID.test(audience || '') ? audience : 'aud_sample',
    action: 'entered',
    profile: { segment_id: `use_sample_${n}` },
    external_ids: [
      { type: 'email', id: `jane.old${n}@example.com`, created_at: at(400) },
      { type: 'phone', id: '(415) 555-0100', created_at: at(380) },
      { type: 'ios.idfa', id: '6D92078A-8246-4BA4-AE5B-76104861E7DC', created_at: at(300) },
      { type: 'email', id: ` Jane.Doe${n}@Example.com `, created_at: at(200) },
      { type: 'user_id', id: `user-${n}`, created_at: at(190) },
      { type: 'phone', id: '+44 20 7946 0958', created_at: at(120) },
      { type: 'android.idfa', id: 'cdda802e-fb9c-47ad-9866-0794d394c912', created_at: at(90) },
      { type: 'phone', id: 'call me maybe', created_at: at(60) },
      { type: 'email', id: `jane${n}@example.com`, created_at: at(10) },
      { type: 'ios.idfa', id: 'A1B2C3D4-0000-4000-8000-000000000001', created_at: at(5) },
    ],
  };
}

const WHY = {
  used: 'sent',
  no_identifiers: 'nothing to send: the profile has no usable identifier of this type',
  skipped_send_mobile_ids_off: 'not sent: mobile advertising ids need "Send mobile advertising ids"',
  skipped_custom_in_default_setup: 'not sent: custom identifiers are sent in customized setup only',
};

function outcomeText(c, m) {
  switch (c.outcome) {
    case 'picked':
      if (m.applied_strategy !== m.strategy) return 'picked: on exit every identifier is sent, so the profile is removed whichever one matched';
      return { last_added: 'picked: the newest valid one (last added)', first_added: 'picked: the oldest valid one (first added)', all: 'picked (all)' }[m.applied_strategy] || 'picked';
    case 'not_picked': return m.applied_strategy === 'last_added' ? 'not picked: a newer one is sent' : 'not picked: an older one is sent';
    case 'duplicate': return 'not sent again: the same value as an earlier one once normalized';
    case 'invalid': return `dropped as invalid: ${c.reason}`;
    case 'empty': return 'dropped: empty once normalized';
  }
  return c.outcome;
}

// renderPreview shows a preview answer; event is the sample sent, for the
// raw identifier values the explanation points at.
export function renderPreview(el, pv, event) {
  const ids = Array.isArray(event.external_ids) ? event.external_ids : [];
  const parts = [];
  if (pv.dlq) {
    parts.push(h('div', { class: 'dlq', id: 'preview-dlq' }, h('strong', { text: `Dead-lettered (${pv.dlq.code}): ` }), h('span', { text: pv.dlq.error })));
  }
  const facts = [];
  facts.push(`${pv.records.length} record${pv.records.length === 1 ? '' : 's'}`);
  if (pv.unmatched) facts.push('the profile is unmatched: nothing to send under this configuration');
  if (pv.invalid_identifiers) facts.push(`${pv.invalid_identifiers} identifier value${pv.invalid_identifiers === 1 ? '' : 's'} dropped as invalid`);
  parts.push(h('p', { id: 'preview-facts', class: pv.unmatched ? 'warn' : '', text: facts.join(' · ') }));

  if (pv.explain) {
    parts.push(h('h3', { text: 'Which identifiers, and why' }));
    parts.push(h('div', { id: 'preview-explain' }, pv.explain.mappings.map((m, i) => h('div', { class: 'mapping' },
      h('p', {}, h('strong', { text: `${m.segment} → ${m.destination}` }), h('span', { text: ` (${m.strategy.replace('_', ' ')}): ${WHY[m.status] || m.status}` })),
      m.candidates.length ? h('table', { class: 'list small' },
        h('caption', { class: 'sr-only', text: `Candidates of mapping ${i + 1}, oldest first` }),
        h('thead', {}, h('tr', {}, ['Value', 'Added', 'Outcome'].map(x => h('th', { scope: 'col', text: x })))),
        h('tbody', {}, m.candidates.map(c => h('tr', { class: c.outcome },
          h('td', {}, h('code', { text: ids[c.index] ? String(ids[c.index].id) : `external_ids[${c.index}]` })),
          h('td', { text: fmtTime(c.created_at) }),
          h('td', { text: outcomeText(c, m) }))))) : null,
      m.omitted ? h('p', { class: 'muted', text: `${m.omitted} more not listed` }) : null))));
  }

  if (pv.records.length) {
    parts.push(h('h3', { text: 'Records' }));
    parts.push(h('div', { id: 'preview-records' }, pv.records.map(rec => recordView(rec))));
  }
  show(el, parts);
}

function recordView(rec) {
  const v = rec.value || {};
  const p = v.payload || {};
  const head = h('p', {}, h('span', { text: 'topic ' }), h('code', { text: rec.topic }), h('span', { text: ' · key ' }), h('code', { text: rec.key }),
    h('span', { text: ` · ${v.action || ''}` }));
  let body;
  if (Array.isArray(p.schema) && Array.isArray(p.data)) {
    // Facebook: rows of values under the schema's keys.
    body = h('table', { class: 'list small rows' },
      h('caption', { text: 'Facebook rows' }),
      h('thead', {}, h('tr', {}, p.schema.map(k => h('th', { scope: 'col', text: k })))),
      h('tbody', {}, p.data.map(row => h('tr', {}, row.map(x => h('td', {}, h('code', { text: x })))))));
  }
  return h('div', { class: 'record' }, head, body,
    h('details', {}, h('summary', { text: 'Envelope (JSON)' }), h('pre', { text: JSON.stringify(v, null, 2) })));
}
