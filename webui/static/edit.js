// edit.js: one connection's settings screen (Default or Customized setup,
// identifier mappings, settings) with the live preview beside it. Every rule
// is the API's: the configuration being edited is sent to POST /v1/preview
// as it changes, and the problems it answers are shown at the fields they
// name. Saving is a PUT with If-Match; a conflicting edit is shown, never
// overwritten.

import { h, show, field, fmtTime, status, uid } from './dom.js';
import { call, catalog, connPath, errorText, serverNow } from './api.js';
import { canWrite, onLeave, session, setDirty } from './state.js';
import { tick } from './connections.js';
import { renderPreview, sampleEvent } from './preview.js';
import { diffConfigs, renderDiff } from './history.js';

const STRATEGIES = [['last_added', 'Last added'], ['first_added', 'First added'], ['all', 'All']];

export async function editScreen(el, params, alive) {
  const { space, audience, destination } = params;
  show(el, h('h1', { text: 'Connection' }), h('p', { text: 'Loading…' }));
  let cat;
  try { cat = await catalog(); } catch (e) {
    if (alive()) show(el, h('p', { class: 'error', role: 'alert', text: e.message }));
    return;
  }
  if (!alive()) return;
  const ed = new Editor(el, cat, space, audience, destination, alive);
  onLeave(() => ed.stop());
  await ed.load();
}

// effectText says when an edit saved now takes effect, given the
// connection as GET shows it (null when it has no version in effect or
// pending): the text of every confirmation, Save's and Restore's.
export function effectText(conn) {
  if (!conn || (!conn.active && !conn.pending)) {
    return 'This is the first version of the connection: it takes effect as soon as it is saved.';
  }
  const minutes = Math.round(session.delay / 6) / 10;
  const when = new Date(serverNow() + session.delay * 1000).toISOString();
  let text = `This edit takes effect after the activation delay of ${minutes} minutes, at about ${fmtTime(when)}.`;
  if (conn.active) text += ` Until then version ${conn.active.version} keeps serving.`;
  if (conn.pending) text += ` It replaces the pending ${conn.pending.deleted ? 'deletion' : 'version'} ${conn.pending.version}.`;
  return text;
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
  constructor(el, cat, space, audience, destination, alive) {
    Object.assign(this, { el, cat, space, audience, destination, alive });
    this.types = Object.fromEntries(cat.destination_types.map(t => [t.type, t]));
    this.fields = new Map(); // config path -> {control, p}
    this.seq = 0;
    this.timer = 0;
    this.stopTick = () => {};
    this.stash = null; // customized rows kept while default setup is shown
  }

  // stop ends the editor's timers (the screen is left).
  stop() {
    this.stopTick();
    clearTimeout(this.timer);
    this.seq++;
  }

  type() { return this.types[this.cfg.destination_type] || this.cat.destination_types[0]; }

  // load reads the connection and shows it in the form (unsaved edits are
  // replaced: called at start, after a save and on "load theirs").
  async load() {
    const path = connPath(this.space, this.audience, this.destination);
    const r = await call('GET', path);
    if (!this.alive()) return;
    this.conn = null;
    // The precondition of the next save: the newest version this editor
    // has seen, or, for a connection that does not exist, "create only"
    // (If-None-Match: *), or the newest version of its history when it was
    // deleted, so that a create never replaces one made meanwhile.
    this.precondition = {};
    if (r.status === 200) {
      this.conn = r.body;
      this.precondition = { 'If-Match': `"${r.etag}"` };
      const v = (r.body.pending && !r.body.pending.deleted && r.body.pending.config) ? r.body.pending : r.body.active;
      this.cfg = v && v.config ? structuredClone(v.config) : blankConfig(this.cat);
      this.cfg = withDefaults(this.cfg, this.type());
    } else if (r.status === 404) {
      this.cfg = blankConfig(this.cat);
      const hist = await call('GET', path + '/history');
      if (!this.alive()) return;
      this.precondition = hist.status === 200 && hist.body.entries.length
        ? { 'If-Match': `"${hist.body.entries[0].version}"` }
        : { 'If-None-Match': '*' };
    } else {
      show(this.el, h('h1', { text: 'Connection' }), h('p', { class: 'error', role: 'alert', text: errorText(r) }));
      return;
    }
    this.isNew = r.status === 404;
    this.stash = null;
    setDirty(false);
    this.sample ??= JSON.stringify(sampleEvent(this.space, this.audience, serverNow()), null, 2);
    this.render();
  }

  // refreshVersions reads the connection again for its versions box only
  // (a pending version took effect): the form, and its unsaved edits, stay.
  async refreshVersions() {
    const r = await call('GET', connPath(this.space, this.audience, this.destination));
    if (!this.alive() || r.status !== 200) return;
    this.conn = r.body;
    const box = document.getElementById('versions');
    if (box) box.replaceWith(this.versionsBox());
  }

  // render draws the whole screen from the editor's state, keeping the
  // keyboard focus on the control that had it.
  render() {
    const focus = focusKey(document.activeElement);
    this.seq++; // answers to earlier previews describe another form
    const heading = h('h1', {}, this.isNew ? 'New connection ' : 'Connection ', h('code', { text: this.destination }));
    const crumbs = h('p', { class: 'muted' }, 'Audience ', h('code', { text: this.audience }), ' in space ', h('code', { text: this.space }), ' · ',
      h('a', { href: '#/connections?' + new URLSearchParams({ space: this.space, audience: this.audience }), text: 'all connections' }), ' · ',
      h('a', { href: '#/history?' + new URLSearchParams({ space: this.space, audience: this.audience, destination: this.destination }), text: 'history' }));
    this.summary = h('div', { class: 'problems', id: 'problems', role: 'alert' });
    this.summaryText = '';
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
    restoreFocus(this.el, focus);
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
    this.stopTick();
    this.stopTick = tick(cds, () => this.refreshVersions());
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
    setDirty(true);
    this.seq++;
    if (this.result) show(this.result); // an earlier save's message no longer describes the form
    if (structural) { this.render(); return; }
    this.schedule(250);
  }

  formBody() {
    const cfg = this.cfg, t = this.type();
    const typeSel = h('select', { name: 'destination_type', onchange: (e) => {
      cfg.destination_type = e.target.value;
      withDefaults(cfg, this.type());
      this.stash = null;
      cfg.identifiers = cfg.setup === 'customized' ? this.startingRows() : [];
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
          if (value === 'customized') {
            // Back to the rows set aside, or start from the default plan.
            cfg.identifiers = this.stash || (cfg.identifiers.length ? cfg.identifiers : this.startingRows());
            this.stash = null;
          } else {
            if (cfg.identifiers.length) this.stash = cfg.identifiers;
            cfg.identifiers = [];
          }
          this.onChange(true);
        } }),
        h('label', { for: id, text: label }));
    };
    const setup = h('fieldset', { class: 'setup' }, h('legend', { text: 'Setup' }),
      radio('default', 'Default setup'), radio('customized', 'Customized setup'));
    this.reg('setup', null, setup);

    return [typeBox, ext, this.settingsBox(), setup, cfg.setup === 'customized' ? this.mappingsBox() : this.defaultPlanBox()];
  }

  // startingRows are the rows of a new customized setup: the default plan,
  // as the default setup applies it (mobile ids only when they are sent).
  startingRows() {
    return structuredClone(this.defaultPlan())
      .filter(m => this.cfg.settings.send_mobile_ids || !this.cat.mobile_ad_id_types.includes(m.segment));
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
            if (destCtl.tagName === 'SELECT' && m.destination && ![...destCtl.options].some(o => o.value === m.destination)) {
              // A proposed key this type's list does not offer (say, for
              // another upload key type): show it, and the API's message.
              destCtl.append(h('option', { value: m.destination, text: m.destination }));
            }
            destCtl.value = m.destination;
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
        onclick: () => {
          cfg.identifiers.splice(i, 1);
          this.onChange(true);
          // Focus goes to the row that took this one's place, or to Add.
          const next = this.el.querySelector(`#mappings input[name=segment-${Math.min(i, cfg.identifiers.length - 1)}]`);
          (next || this.el.querySelector('#add-identifier')).focus();
        } });
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
      const inp = h('input', { type: 'checkbox', id, name: key, checked: !!s[key], 'aria-describedby': hint ? id + '-hint' : null,
        onchange: (e) => { s[key] = e.target.checked; this.onChange(key === 'send_track'); } });
      const box = h('div', { class: 'check' }, inp, h('label', { for: id, text }), hint ? h('span', { class: 'hint', id: id + '-hint', text: hint }) : null);
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
        // Rows keep their keys: one that does not fit the new upload key
        // type stays visible, with the API's message at its row.
        s.upload_key_type = e.target.value;
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
    this.previewOut = h('div', { id: 'preview-out' });
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
    let event, sampleOK = true;
    try { event = JSON.parse(this.sample); } catch (e) {
      // The configuration's problems still follow the form: check it
      // against a generated sample, and show no records.
      this.sampleProblem.textContent = `The sample is not valid JSON: ${e.message}`;
      event = sampleEvent(this.space, this.audience, serverNow());
      sampleOK = false;
    }
    if (sampleOK) this.sampleProblem.textContent = '';
    const dest = /^[a-z0-9][a-z0-9_-]{0,63}$/.test(this.destination || '') ? this.destination : 'preview';
    const r = await call('POST', '/v1/preview', { destination_id: dest, connection: this.cfg, event });
    if (seq !== this.seq || !this.alive()) return; // the form changed since: a newer preview is on its way
    this.showProblems(r.status === 400 ? (r.body.problems || []) : [], 'connection.');
    if (!sampleOK) {
      show(this.previewOut, h('p', { class: 'muted', text: 'Fix the sample to see the preview.' }));
      return;
    }
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
    // The summary is an alert: rewritten only when what it says changes,
    // so a screen reader does not repeat it at every keystroke.
    const lines = rest.map(p => `${p.field ? p.field + ': ' : ''}${p.message}`);
    if (lines.join('\n') !== this.summaryText) {
      this.summaryText = lines.join('\n');
      show(this.summary, lines.length ? h('ul', {}, lines.map(l => h('li', { text: l }))) : null);
    }
  }

  confirmSave() {
    confirmDialog('Save this configuration?', effectText(this.conn), 'Save', () => this.save());
  }

  async save() {
    const saveBtn = this.el.querySelector('#save');
    if (saveBtn) saveBtn.disabled = true; // one save at a time
    const r = await call('PUT', connPath(this.space, this.audience, this.destination), this.cfg, this.precondition);
    if (!this.alive()) return;
    if (r.status === 200 || r.status === 201) {
      status(`Saved version ${r.body.version}.`);
      await this.load();
      if (!this.alive()) return;
      show(this.result, h('p', { class: 'ok', text: r.body.state === 'pending'
        ? `Saved version ${r.body.version}: it takes effect at ${fmtTime(r.body.effective_at)}.`
        : `Saved version ${r.body.version}: it is in effect now.` }));
      return;
    }
    if (saveBtn) saveBtn.disabled = !canWrite();
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
    if (!this.alive()) return;
    const e = hist.status === 200 && hist.body.entries[0];
    const deleting = e && e.action === 'delete';
    const theirs = deleting ? null : (g.status === 200 ? ((g.body.pending && g.body.pending.config) || (g.body.active && g.body.active.config)) : null);
    const who = e ? `${e.actor} ${deleting ? 'deleted the connection (version ' + e.version + ')' : 'saved version ' + e.version} at ${fmtTime(e.at)}`
      : 'Someone else changed this connection';
    const diffBox = h('div', {});
    renderDiff(diffBox, diffConfigs(theirs, this.cfg), deleting ? 'their deletion' : 'theirs', 'yours');
    show(this.result, h('div', { class: 'conflict', id: 'conflict', role: 'alert' },
      h('h2', { text: 'Someone else edited this connection' }),
      h('p', { text: `${who} while you were editing. Your changes were not saved, and theirs were not overwritten.` }),
      h('p', { text: 'What would change if you saved yours over theirs:' }),
      diffBox,
      h('div', { class: 'buttons' },
        h('button', { type: 'button', id: 'load-theirs', text: 'Discard mine and load theirs', onclick: () => this.load() }),
        h('button', { type: 'button', id: 'keep-mine', text: 'Keep mine (save again to replace theirs)', onclick: () => {
          // The next save is made over the version just shown, knowingly.
          if (e) this.precondition = { 'If-Match': `"${e.version}"` };
          this.conn = g.status === 200 ? g.body : null;
          this.el.querySelector('#versions').replaceWith(this.versionsBox());
          show(this.result);
          status('Your changes are kept: Save replaces theirs.');
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
  const dlg = h('dialog', { class: 'confirm', 'aria-labelledby': titleId, 'aria-describedby': titleId + '-text', id: 'confirm' },
    h('h2', { id: titleId, text: title }), h('p', { id: titleId + '-text', text }),
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


// focusKey names the focused control so that it can be found again in a
// redrawn form: its name, and its value for a radio button.
function focusKey(el) {
  if (!el || !el.name || !el.closest || !el.closest('#editor, #preview')) return null;
  return { name: el.name, value: el.type === 'radio' ? el.value : null };
}

// restoreFocus focuses the control focusKey named, if the redrawn form has it.
function restoreFocus(root, key) {
  if (!key) return;
  const sel = `[name="${CSS.escape(key.name)}"]` + (key.value !== null ? `[value="${CSS.escape(key.value)}"]` : '');
  const el = root.querySelector(sel);
  if (el) el.focus();
}
