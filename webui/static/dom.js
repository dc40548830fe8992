// dom.js builds the page with DOM calls only. Text always goes in as text
// nodes: nothing from the API (identifiers, names, ids) is ever parsed as
// HTML. There is deliberately no helper that parses markup.

// h creates an element. props: "class", "text", "for", event handlers as
// on<event> functions, booleans set as properties (checked, disabled,
// selected, required, readOnly), everything else as attributes. Children are
// nodes, strings (text) or arrays of them; null and false are skipped.
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false && !isProp(k)) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'for') el.htmlFor = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (isProp(k)) el[k] = v;
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function isProp(k) {
  return ['checked', 'disabled', 'selected', 'required', 'readOnly', 'value'].includes(k);
}

// append adds children (nodes, strings, nested arrays) to el as nodes.
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// show replaces the content of el.
export function show(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let ids = 0;
// uid returns a fresh element id with prefix, for label/control pairs.
export function uid(prefix) {
  ids++;
  return `${prefix}-${ids}`;
}

// field is a label and a control, tied by id.
export function field(labelText, control, hint) {
  if (!control.id) control.id = uid('f');
  const hintEl = hint ? h('span', { class: 'hint', id: control.id + '-hint', text: hint }) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: control.id, text: labelText }), control, hintEl);
}

let statusTimer = 0;
// status announces a message in the live region, shown for a few seconds.
export function status(msg) {
  const el = document.getElementById('status');
  if (!el) return;
  el.textContent = msg;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { el.textContent = ''; }, 8000);
}

// fmtTime formats an RFC 3339 time for people, in UTC like the API.
export function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
}

// fmtCountdown formats milliseconds as "in 4:59" or "now".
export function fmtCountdown(ms) {
  if (ms <= 0) return 'now';
  const s = Math.ceil(ms / 1000);
  const m = Math.floor(s / 60);
  const r = String(s % 60).padStart(2, '0');
  return m >= 60 ? `in ${Math.floor(m / 60)} h ${m % 60} min` : `in ${m}:${r}`;
}
