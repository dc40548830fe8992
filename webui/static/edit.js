// edit.js: one connection's settings screen (Default or Customized setup,
// identifier mappings, settings) with the live preview beside it. Every rule
// is the API's: the configuration being edited is sent to POST /v1/preview
// as it changes, and the problems it answers are shown at the fields they
// name. Saving is a PUT with If-Match; a conflicting edit is shown, never
// overwritten.

import { h, show, field, fmtTime, status, uid } from './dom.js';
import { call, catalog, connPath, errorText, serverNow } from './api.js';
import { canWrite, go, session } from './state.js';
import { tick } from './connections.js';
import { renderPreview, sampleEvent } from './preview.js';
import { diffConfigs, renderDiff } from './history.js';

const STRATEGIES = [['last_added', 'Last added'], ['first_added', 'First added'], ['all', 'All']];

export async function editScreen(el, params) {
  const { space, audience, destination } = params;
  const isNew = params.new === '1';
  show(el, h('h1', { text: 'Connection' }), h('p', { text: 'Loading…' }));
  let cat;
  try { cat = await catalog(); } catch (e) { show(el, h('p', { class: 'error', role: 'alert', text: e.message })); return; }
  const ed = new Editor(el, cat, space, audience, destination);
  await ed.load(isNew);
}

// blankConfig is a new connection's starting point: the first type, default
// setup.
function blankConfig(cat) {
  const t = cat.destination_types[0];
  return withDefaults({ destination_type: t.type, setup: 'default', settings: {}, identifiers: [] }, t);
}

// withDefaults fills what the editor shows for a type (the API applies the
// same defaults; these only pre-fill the controls).
function withDefaults(cfg, t) {
  // The server stores every setting whatever the type (DESIGN.md §3), so
  // the editor holds them all too and a diff against a stored version shows
  // only real changes.
  const s = cfg.settings = { ...(cfg.settings || {}) };
  s.send_mobile_ids = !!s.send_mobile_ids;
  s.send_track ??= true;
  s.send_identify ??= false;
  s.enter_event ??= 'Audience Entered';
  s.exit_event ??= 'Audience Exited';
  if (t.type === 'google_ads_remarketing_lists') s.upload_key_type ||= 'CONTACT_INFO';
  else delete s.upload_key_type;
  if (!t.requires_external_audience_id) delete cfg.external_audience_id;
  else cfg.external_audience_id ??= '';
  cfg.identifiers = cfg.identifiers || [];
  return cfg;
}

class Editor {
  constructor(el, cat, space, audience, destination) {
    Object.assign(this, { el, cat, space, audience, destination });
    this.types = Object.fromEntries(cat.destination_types.map(t => [t.type, t]));
    this.fields = new Map(); // config path -> {box, control}
    this.seq = 0;
    this.timer = 0;
  }

  type() { return this.types[this.cfg.destination_type] || this.cat.destination_types[0]; }

  async load(isNew) {
    const r = await call('GET', connPath(this.space, this.audience, this.destination));
    this.etag = '';
    this.conn = null;
    if (r.status === 200) {
      this.conn = r.body;
      this.etag = r.etag;
      const v = (r.body.pending && !r.body.pending.deleted && r.body.pending.config) ? r.body.pending : r.body.active;
      this.cfg = v && v.config ? structuredClone(v.config) : blankConfig(this.cat);
      this.base = v && v.config ? structuredClone(v.config) : null;
      this.cfg = withDefaults(this.cfg, this.type());
    } else if (r.status === 404) {
      this.cfg = blankConfig(this.cat);
      this.base = null;
    } else {
      show(this.el, h('h1', { text: 'Connection' }), h('p', { class: 'error', role: 'alert', text: errorText(r) }));
      return;
    }
    this.isNew = r.status === 404;
    if (this.isNew && !isNew && this.conn === null && r.status === 404) {
      status('This connection does not exist (or its deletion is effective): saving creates it.');
    }
    this.sample ??= JSON.stringify(sampleEvent(this.space, this.audience, serverNow()), null, 2);
    this.render();
  }

  render() {
    const heading = h('h1', {}, this.isNew ? 'New connection ' : 'Connection ', h('code', { text: this.destination }));
    const crumbs = h('p', { class: 'muted' }, 'Audience ', h('code', { text: this.audience }), ' in space ', h('code', { text: this.space }), ' · ',
      h('a', { href: '#/connections?' + new URLSearchParams({ space: this.space, audience: this.audience }), text: 'all connections' }), ' · ',
      h('a', { href: '#/history?' + new URLSearchParams({ space: this.space, audience: this.audience, destination: this.destination }), text: 'history' }));
    this.summary = h('div', { class: 'problems', id: 'problems', role: 'alert' });
    this.result = h('div', { id: 'save-result', role: 'status' });
    this.fields.clear();
    const form = h('form', { id: 'editor', class: 'card', onsubmit: (e) => { e.preventDefault(); this.confirmSave(); } },
      h('fieldset', { class: 'plain', disabled: !canWrite() }, this.formBody()),
      this.summary,
      h('div', { class: 'buttons' },
        h('button', { type: 'submit', class: 'primary', id: 'save', disabled: !canWrite(), text: 'Save' }),
        canWrite() ? null : h('span', { class: 'muted', id: 'read-only-note', text: 'Your token has read scope: you can try changes in the preview but not save them.' })),
      this.result);
    this.previewEl = h('section', { class: 'card preview', id: 'preview', 'aria-labelledby': 'preview-h' });
    show(this.el, heading, crumbs, this.versionsBox(), h('div', { class: 'split' }, form, this.previewEl));
    this.renderPreviewPane();
    this.schedule(0);
  }

  versionsBox() {
    const c = this.conn;
    if (!c) return h('p', { id: 'versions', class: 'muted', text: 'Not connected yet: the first version takes effect as soon as it is saved.' });
    const cds = [];
    const line = (label, v) => {
      if (!v) return null;
      const cd = label === 'Pending' ? h('span', { class: 'countdown', 'data-effective-at': v.effective_at }) : null;
      if (cd) cds.push(cd);
      return h('li', { class: label.toLowerCase() }, h('strong', { text: `${label}: ` }),
        h('span', { text: `version ${v.version}${v.deleted ? ' (deletion)' : ''}, ${label === 'Pending' ? 'takes effect' : 'effective since'} ${fmtTime(v.effective_at)} ` }), cd);
    };
    const box = h('ul', { id: 'versions', class: 'versions' }, line('Active', c.active), line('Pending', c.pending));
    tick(cds, () => this.load(false));
    return box;
  }

  // reg records the box of a config path, where its problems are shown.
  reg(path, control, box) {
    if (control) control.dataset.field = path;
    const p = h('p', { class: 'problem', id: uid('problem') });
    if (control) control.setAttribute('aria-errormessage', p.id);
    (box || control.parentElement || control).append(p);
    this.fields.set(path, { control, p });
    return p;
  }

  onChange(structural) {
    if (this.result) show(this.result); // an earlier save's message no longer describes the form
    if (structural) { this.render(); return; }
    this.schedule(250);
  }

  formBody() {
    const cfg = this.cfg, t = this.type();
    const typeSel = h('select', { name: 'destination_type', onchange: (e) => {
      cfg.destination_type = e.target.value;
      withDefaults(cfg, this.type());
      cfg.identifiers = [];
      this.onChange(true);
    } }, this.cat.destination_types.map(d => h('option', { value: d.type, selected: d.type === cfg.destination_type, text: d.type })));
    const typeBox = field('Destination type', typeSel);
    this.reg('destination_type', typeSel, typeBox);

    let ext = null;
    if (t.requires_external_audience_id) {
      const inp = h('input', { name: 'external_audience_id', value: cfg.external_audience_id || '', autocomplete: 'off', spellcheck: 'false',
        oninput: (e) => { cfg.external_audience_id = e.target.value; this.onChange(false); } });
      ext = field('External audience id', inp, 'the audience or list id at the destination');
      this.reg('external_audience_id', inp, ext);
    }

    const radio = (value, label) => {
      const id = uid('setup');
      return h('span', { class: 'radio' },
        h('input', { type: 'radio', name: 'setup', id, value, checked: cfg.setup === value, onchange: () => {
          cfg.setup = value;
          if (value === 'customized' && cfg.identifiers.length === 0) {
            // Start from the default plan, as the default setup applies it.
            cfg.identifiers = structuredClone(this.defaultPlan())
              .filter(m => cfg.settings.send_mobile_ids || !this.cat.mobile_ad_id_types.includes(m.segment));
          }
          if (value === 'default') cfg.identifiers = [];
          this.onChange(true);
        } }),
        h('label', { for: id, text: label }));
    };
    const setup = h('fieldset', { class: 'setup' }, h('legend', { text: 'Setup' }),
      radio('default', 'Default setup'), radio('customized', 'Customized setup'));
    this.reg('setup', null, setup);

    return [typeBox, ext, this.settingsBox(), setup, cfg.setup === 'customized' ? this.mappingsBox() : this.defaultPlanBox()];
  }

  defaultPlan() {
    const t = this.type();
    if (t.default_plans) return t.default_plans[this.cfg.settings.upload_key_type] || [];
    return t.default_plan || [];
  }

  defaultPlanBox() {
    const plan = this.defaultPlan();
    const box = h('section', { class: 'plan', 'aria-labelledby': 'plan-h' },
      h('h2', { id: 'plan-h', text: 'Identifiers (default setup)' }),
      h('p', { class: 'muted', text: 'The default setup sends these. Choose Customized setup to pick identifiers, keys and strategies yourself.' }),
      h('table', { class: 'list' },
        h('thead', {}, h('tr', {}, ['Segment identifier', 'Destination key', 'Strategy'].map(x => h('th', { scope: 'col', text: x })))),
        h('tbody', {}, plan.map(m => h('tr', {}, h('td', { text: m.segment }), h('td', { text: m.destination }), h('td', { text: label(m.strategy) }))))));
    this.reg('identifiers', null, box);
    return box;
  }

  // keysFor is the fixed key list of the type (for Google, of the upload key
  // type), or null for free-text keys.
  keysFor() {
    const t = this.type();
    if (!t.keys) return null;
    if (t.upload_key_types) return t.upload_key_types[this.cfg.settings.upload_key_type] || t.keys;
    return t.keys;
  }

  mappingsBox() {
    const cfg = this.cfg, t = this.type();
    const listId = uid('idtypes');
    const datalist = h('datalist', { id: listId }, this.cat.identifier_types.map(x => h('option', { value: x })));
    const keys = this.keysFor();
    const pattern = t.key_pattern ? new RegExp(t.key_pattern) : null;
    const rows = cfg.identifiers.map((m, i) => {
      const n = i + 1;
      const path = `identifiers[${i}]`;
      const seg = h('input', { name: `segment-${i}`, value: m.segment || '', list: listId, autocomplete: 'off', spellcheck: 'false',
        'aria-label': `Segment identifier, row ${n}`,
        oninput: (e) => {
          const was = m.segment;
          m.segment = e.target.value.trim();
          // Follow the proposed key while the key is still the proposal.
          const proposed = (s) => (t.proposed_keys || {})[s] || (keys ? '' : s);
          if (!m.destination || m.destination === proposed(was)) {
            m.destination = proposed(m.segment) || m.destination;
            if (destCtl.tagName === 'SELECT') destCtl.value = m.destination; else destCtl.value = m.destination;
            checkKey();
          }
          this.onChange(false);
        } });
      let destCtl;
      const keyMsg = h('p', { class: 'problem local' });
      const checkKey = () => {
        if (!pattern) return;
        const ok = pattern.test(destCtl.value);
        destCtl.setAttribute('aria-invalid', ok ? 'false' : 'true');
        keyMsg.textContent = ok ? '' : `must match ${t.key_pattern}`;
      };
      if (keys) {
        const opts = keys.includes(m.destination) || !m.destination ? keys : [m.destination, ...keys];
        destCtl = h('select', { name: `destination-${i}`, 'aria-label': `Destination key, row ${n}`,
          onchange: (e) => { m.destination = e.target.value; this.onChange(false); } },
        m.destination ? null : h('option', { value: '', text: 'choose a key', selected: true }),
        opts.map(k => h('option', { value: k, selected: k === m.destination, text: k })));
      } else {
        destCtl = h('input', { name: `destination-${i}`, value: m.destination || '', autocomplete: 'off', spellcheck: 'false',
          'aria-label': `Destination key, row ${n}`,
          oninput: (e) => { m.destination = e.target.value; checkKey(); this.onChange(false); } });
        checkKey();
      }
      const strat = h('select', { name: `strategy-${i}`, 'aria-label': `Strategy, row ${n}`,
        onchange: (e) => { m.strategy = e.target.value; this.onChange(false); } },
      STRATEGIES.map(([v, l]) => h('option', { value: v, selected: v === m.strategy, text: l })));
      const remove = h('button', { type: 'button', class: 'link', 'aria-label': `Remove row ${n}`, text: 'Remove',
        onclick: () => { cfg.identifiers.splice(i, 1); this.onChange(true); } });
      const segCell = h('td', {}, seg), destCell = h('td', {}, destCtl, keyMsg), stratCell = h('td', {}, strat);
      const row = h('tr', { 'data-row': i }, segCell, destCell, stratCell, h('td', {}, remove));
      this.reg(path + '.segment', seg, segCell);
      this.reg(path + '.destination', destCtl, destCell);
      this.reg(path + '.strategy', strat, stratCell);
      this.reg(path, null, segCell);
      return row;
    });
    const add = h('button', { type: 'button', id: 'add-identifier', text: '+ Add Identifier', onclick: () => {
      cfg.identifiers.push({ segment: '', destination: '', strategy: 'last_added' });
      this.onChange(true);
      const inputs = this.el.querySelectorAll('#mappings tbody tr:last-child input');
      if (inputs.length) inputs[0].focus();
    } });
    const box = h('section', { class: 'mappings', 'aria-labelledby': 'mappings-h' },
      h('h2', { id: 'mappings-h', text: 'Identifiers (customized setup)' }),
      h('p', { class: 'muted', text: 'Each row sends a Segment identifier under a destination key. Last added sends the newest, first added the oldest, all sends every one (at most three rows may use all).' }),
      datalist,
      h('table', { class: 'list', id: 'mappings' },
        h('thead', {}, h('tr', {}, ['Segment identifier', 'Destination key', 'Strategy', ''].map(x => h('th', { scope: 'col', text: x })))),
        h('tbody', {}, rows)),
      add);
    this.reg('identifiers', null, box);
    return box;
  }

  settingsBox() {
    const s = this.cfg.settings, t = this.type();
    const check = (key, text, hint) => {
      const id = uid('set');
      const inp = h('input', { type: 'checkbox', id, name: key, checked: !!s[key], onchange: (e) => {
        s[key] = e.target.checked; this.onChange(key === 'send_track');
      } });
      const box = h('div', { class: 'check' }, inp, h('label', { for: id, text }), hint ? h('span', { class: 'hint', text: hint }) : null);
      this.reg('settings.' + key, inp, box);
      return box;
    };
    const text = (key, lbl) => {
      const inp = h('input', { name: key, value: s[key] || '', oninput: (e) => { s[key] = e.target.value; this.onChange(false); } });
      const box = field(lbl, inp);
      this.reg('settings.' + key, inp, box);
      return box;
    };
    const parts = [check('send_mobile_ids', 'Send mobile advertising ids', '(ios.idfa, android.idfa)')];
    if (t.upload_key_types) {
      const sel = h('select', { name: 'upload_key_type', onchange: (e) => {
        s.upload_key_type = e.target.value;
        if (this.cfg.setup === 'customized') {
          const allowed = this.keysFor();
          for (const m of this.cfg.identifiers) if (!allowed.includes(m.destination)) m.destination = m.destination || '';
        }
        this.onChange(true);
      } }, Object.keys(t.upload_key_types).map(k => h('option', { value: k, selected: k === s.upload_key_type, text: k })));
      const box = field('Upload key type', sel, 'which identifiers the Google list matches on');
      this.reg('settings.upload_key_type', sel, box);
      parts.push(box);
    }
    if (t.kind === 'event') {
      parts.push(check('send_track', 'Send track events'), check('send_identify', 'Send identify calls'));
      if (s.send_track) parts.push(text('enter_event', 'Event name on entering'), text('exit_event', 'Event name on exiting'));
    }
    return h('fieldset', { class: 'settings' }, h('legend', { text: 'Settings' }), parts);
  }

  // schedule asks for a preview after delay ms (the last change wins).
  schedule(delay) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.runPreview(), delay);
  }

  renderPreviewPane() {
    const area = h('textarea', { id: 'sample', name: 'sample', rows: 14, spellcheck: 'false', value: this.sample,
      oninput: (e) => { this.sample = e.target.value; this.schedule(400); } });
    area.value = this.sample;
    this.sampleProblem = h('p', { class: 'problem', id: 'sample-problem', role: 'alert' });
    this.previewOut = h('div', { id: 'preview-out', 'aria-live': 'polite' });
    show(this.previewEl,
      h('h2', { id: 'preview-h', text: 'Preview' }),
      h('p', { class: 'muted', text: 'What this destination would receive for the sample profile under the configuration being edited. Nothing is saved or sent.' }),
      field('Sample event (JSON)', area),
      h('div', { class: 'buttons' }, h('button', { type: 'button', text: 'New sample profile', onclick: () => {
        this.sample = JSON.stringify(sampleEvent(this.space, this.audience, serverNow()), null, 2);
        area.value = this.sample;
        this.schedule(0);
      } })),
      this.sampleProblem, this.previewOut);
  }

  async runPreview() {
    const seq = ++this.seq;
    let event;
    try { event = JSON.parse(this.sample); } catch (e) {
      this.sampleProblem.textContent = `The sample is not valid JSON: ${e.message}`;
      return;
    }
    this.sampleProblem.textContent = '';
    const dest = /^[a-z0-9][a-z0-9_-]{0,63}$/.test(this.destination || '') ? this.destination : 'preview';
    const r = await call('POST', '/v1/preview', { destination_id: dest, connection: this.cfg, event });
    if (seq !== this.seq) return; // a newer preview is on its way
    this.showProblems(r.status === 400 ? (r.body.problems || []) : [], 'connection.');
    if (r.status === 400) {
      const evp = (r.body.problems || []).filter(p => p.field === 'event' || (p.field || '').startsWith('event.'));
      this.sampleProblem.textContent = evp.map(p => `${p.field}: ${p.message}`).join('; ');
      show(this.previewOut, h('p', { class: 'muted', text: 'Fix the problems shown in the form to see the preview.' }));
      return;
    }
    if (r.status !== 200) { show(this.previewOut, h('p', { class: 'error', text: errorText(r) })); return; }
    renderPreview(this.previewOut, r.body, event);
  }

  // showProblems puts each problem at the field it names (prefix stripped),
  // and the rest in the summary.
  showProblems(problems, prefix) {
    for (const { control, p } of this.fields.values()) {
      p.textContent = '';
      if (control) control.removeAttribute('aria-invalid');
    }
    const rest = [];
    for (const pr of problems) {
      let f = pr.field || '';
      if (prefix) {
        if (f === prefix.slice(0, -1)) f = '';
        else if (f.startsWith(prefix)) f = f.slice(prefix.length);
        else continue;
      }
      const at = this.fields.get(f);
      if (!at) { rest.push(pr); continue; }
      at.p.textContent = at.p.textContent ? `${at.p.textContent}; ${pr.message}` : pr.message;
      if (at.control) at.control.setAttribute('aria-invalid', 'true');
      // The rule on "all" bites at the row that breaks it: say it there too.
      if (f === 'identifiers' && /strategy all/.test(pr.message)) {
        const alls = this.cfg.identifiers.map((m, i) => m.strategy === 'all' ? i : -1).filter(i => i >= 0);
        const last = this.fields.get(`identifiers[${alls[alls.length - 1]}].strategy`);
        if (last) { last.p.textContent = pr.message; last.control.setAttribute('aria-invalid', 'true'); }
      }
    }
    show(this.summary, rest.length ? h('ul', {}, rest.map(p => h('li', { text: `${p.field ? p.field + ': ' : ''}${p.message}` }))) : null);
  }

  confirmSave() {
    const delay = Math.round(session.delay / 60 * 10) / 10;
    const when = new Date(serverNow() + session.delay * 1000);
    const effect = this.conn && this.conn.active
      ? `This edit takes effect after the activation delay of ${delay} minutes, at about ${fmtTime(when.toISOString())}. Until then version ${this.conn.active.version} keeps serving.`
      : 'This is the first version of the connection: it takes effect as soon as it is saved.';
    const replaces = this.conn && this.conn.pending ? ` It replaces the pending version ${this.conn.pending.version}.` : '';
    confirmDialog('Save this configuration?', effect + replaces, 'Save', () => this.save());
  }

  async save() {
    const headers = this.etag ? { 'If-Match': `"${this.etag}"` } : {};
    const r = await call('PUT', connPath(this.space, this.audience, this.destination), this.cfg, headers);
    if (r.status === 200 || r.status === 201) {
      status(`Saved version ${r.body.version}.`);
      await this.load(false);
      show(this.result, h('p', { class: 'ok', text: r.body.state === 'pending'
        ? `Saved version ${r.body.version}: it takes effect at ${fmtTime(r.body.effective_at)}.`
        : `Saved version ${r.body.version}: it is in effect now.` }));
      return;
    }
    if (r.status === 400) {
      this.showProblems(r.body.problems || [], '');
      show(this.result, h('p', { class: 'error', text: errorText(r) }));
      return;
    }
    if (r.status === 412) { await this.conflict(); return; }
    show(this.result, h('p', { class: 'error', role: 'alert', text: errorText(r) }));
  }

  // conflict shows the edit someone else saved since this one was loaded,
  // beside this one; nothing is overwritten until the user says so.
  async conflict() {
    const [g, hist] = await Promise.all([
      call('GET', connPath(this.space, this.audience, this.destination)),
      call('GET', connPath(this.space, this.audience, this.destination) + '/history')]);
    const e = hist.status === 200 && hist.body.entries[0];
    const theirs = g.status === 200 ? ((g.body.pending && g.body.pending.config) || (g.body.active && g.body.active.config)) : null;
    const who = e ? `${e.actor} saved version ${e.version} at ${fmtTime(e.at)}` : 'Someone else changed this connection';
    const diffBox = h('div', {});
    renderDiff(diffBox, diffConfigs(theirs, this.cfg), 'theirs', 'yours');
    show(this.result, h('div', { class: 'conflict', id: 'conflict', role: 'alert' },
      h('h2', { text: 'Someone else edited this connection' }),
      h('p', { text: `${who} while you were editing. Your changes were not saved, and theirs were not overwritten.` }),
      h('p', { text: 'What would change if you saved yours over theirs:' }),
      diffBox,
      h('div', { class: 'buttons' },
        h('button', { type: 'button', id: 'load-theirs', text: 'Discard mine and load theirs', onclick: () => this.load(false) }),
        h('button', { type: 'button', id: 'keep-mine', text: 'Keep mine (save again to replace theirs)', onclick: () => {
          this.etag = g.etag; this.conn = g.status === 200 ? g.body : null; show(this.result); status('Your changes are kept: Save replaces theirs.');
        } }))));
  }
}

function label(strategy) {
  return (STRATEGIES.find(([v]) => v === strategy) || [strategy, strategy])[1];
}

// confirmDialog asks in a modal dialog (keyboard: Tab between the buttons,
// Escape cancels) and runs onOK on confirmation.
export function confirmDialog(title, text, okText, onOK) {
  const titleId = uid('dlg');
  const dlg = h('dialog', { class: 'confirm', 'aria-labelledby': titleId, id: 'confirm' },
    h('h2', { id: titleId, text: title }), h('p', { text }),
    h('form', { method: 'dialog', class: 'buttons' },
      h('button', { value: 'ok', class: 'primary', id: 'confirm-ok', text: okText }),
      h('button', { value: 'cancel', id: 'confirm-cancel', text: 'Cancel' })));
  dlg.addEventListener('close', () => {
    dlg.remove();
    if (dlg.returnValue === 'ok') onOK();
  });
  document.body.append(dlg);
  dlg.showModal();
  dlg.querySelector('#confirm-ok').focus();
}

