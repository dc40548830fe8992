// app.js: the console's shell: sign-in, navigation, the hash router, and the
// catalog screen. Routes live in the fragment (#/connections?space=…), which
// never reaches the server; the token never appears in it.

import { h, show, field, status } from './dom.js';
import { call, catalog, errorText, setToken, signOut, token, setServerTime } from './api.js';
import { connectionsScreen } from './connections.js';
import { editScreen } from './edit.js';
import { historyScreen } from './history.js';
import { session, go, newScreen, isDirty } from './state.js';


function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [route, query] = raw.split('?');
  return { route: route || 'connections', params: Object.fromEntries(new URLSearchParams(query || '')) };
}

const main = () => document.getElementById('main');

async function render() {
  const alive = newScreen();
  lastHash = location.hash;
  const { route, params } = parseRoute();
  renderNav(route);
  if (!token() || !session.scope) {
    if (token() && await whoami(token())) return alive() && render();
    return signInScreen(main());
  }
  const el = main();
  switch (route) {
    case 'edit': await editScreen(el, params, alive); break;
    case 'history': await historyScreen(el, params, alive); break;
    case 'catalog': await catalogScreen(el, alive); break;
    default: await connectionsScreen(el, params, alive);
  }
  if (alive()) el.focus({ preventScroll: true });
}

// Leaving a screen with unsaved edits asks first; a cancelled navigation
// puts the address back without drawing the screen again.
let lastHash = '';
let restoring = false;
function onHashChange() {
  if (restoring) { restoring = false; return; }
  if (!location.hash.startsWith('#/') && location.hash !== '') return; // not a route
  if (isDirty() && !window.confirm('Leave this screen? Your unsaved changes will be lost.')) {
    restoring = true;
    location.hash = lastHash;
    return;
  }
  render();
}

function renderNav(route) {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!session.scope) { show(nav); show(who); return; }
  const link = (r, text) => h('a', { href: '#/' + r, 'aria-current': route === r ? 'page' : null, text });
  show(nav, link('connections', 'Connections'), link('catalog', 'Catalog'));
  show(who,
    h('span', { text: `Signed in as ${session.name} (${session.scope} scope)` }),
    h('button', { type: 'button', class: 'link', onclick: () => { signOut(); session.scope = ''; go('connections'); }, text: 'Sign out' }));
}

// whoami checks a token and fills session; false when it is not accepted.
async function whoami(tok) {
  const r = await call('GET', '/v1/whoami', undefined, {}, tok);
  if (r.status !== 200) return false;
  setToken(tok);
  session.name = r.body.name;
  session.scope = r.body.scope;
  session.delay = r.body.activation_delay_seconds;
  setServerTime(r.body.server_time);
  return true;
}

function signInScreen(el) {
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true, id: 'signin-token' });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card narrow', id: 'signin', onsubmit: async (e) => {
    e.preventDefault();
    show(err);
    const r = await call('GET', '/v1/whoami', undefined, {}, input.value.trim());
    if (r.status !== 200) {
      show(err, r.status === 401 ? 'That token is not accepted.' : errorText(r));
      input.focus();
      return;
    }
    await whoami(input.value.trim());
    status(`Signed in as ${session.name}.`);
    render();
  } },
  h('h1', { text: 'Sign in' }),
  h('p', { text: 'Sign in with an admin API token. A read-scope token can look at everything and change nothing. The token stays in this tab only.' }),
  field('Admin token', input),
  h('button', { type: 'submit', class: 'primary', text: 'Sign in' }),
  err);
  show(el, form);
  input.focus();
}

async function catalogScreen(el, alive) {
  show(el, h('h1', { text: 'Destination types' }), h('p', { text: 'Loading…' }));
  let cat;
  try { cat = await catalog(); } catch (e) {
    if (alive()) show(el, h('h1', { text: 'Destination types' }), h('p', { class: 'error', role: 'alert', text: e.message }));
    return;
  }
  if (!alive()) return;
  const plan = (ms) => h('ol', {}, (ms || []).map(m => h('li', { text: `${m.segment} → ${m.destination} (${m.strategy.replace('_', ' ')})` })));
  const cards = cat.destination_types.map(t => h('section', { class: 'card', 'aria-labelledby': 'cat-' + t.type },
    h('h2', { id: 'cat-' + t.type, text: t.type }),
    h('dl', {},
      h('dt', { text: 'Kind' }), h('dd', { text: t.kind === 'list' ? 'list upload (records of hashed identifiers)' : 'events (Segment track and identify)' }),
      h('dt', { text: 'Destination keys' }), h('dd', { text: t.keys ? t.keys.join(', ') : `free text matching ${t.key_pattern}` }),
      t.upload_key_types ? [h('dt', { text: 'Upload key types' }), h('dd', {}, h('ul', {}, Object.entries(t.upload_key_types).map(([k, v]) => h('li', { text: `${k}: ${v.join(', ')}` }))))] : null,
      h('dt', { text: 'Proposed keys' }), h('dd', { text: Object.entries(t.proposed_keys || {}).map(([s, d]) => `${s} → ${d}`).join(', ') }),
      h('dt', { text: 'External audience id' }), h('dd', { text: t.requires_external_audience_id ? 'required' : 'not used' }),
      h('dt', { text: 'Default setup' }), h('dd', {}, t.default_plans
        ? Object.entries(t.default_plans).map(([k, ms]) => h('div', {}, h('span', { text: `${k}:` }), plan(ms)))
        : plan(t.default_plan)),
      h('dt', { text: 'Normalization' }), h('dd', {}, h('ul', {}, Object.entries(t.normalization || {}).map(([k, v]) => h('li', { text: `${k}: ${v}` })))))));
  show(el, h('h1', { text: 'Destination types' }),
    h('p', { text: `Identifier types: ${cat.identifier_types.join(', ')}. Any other lower-case type is a custom identifier, sent in customized setup only. ${cat.mobile_ad_id_types.join(' and ')} are sent only with send_mobile_ids on.` }),
    cards);
}

window.addEventListener('hashchange', onHashChange);
window.addEventListener('idsync:unauthorized', () => { signOut(); session.scope = ''; status('Your token is no longer accepted: sign in again.'); render(); });
window.addEventListener('beforeunload', (e) => { if (isDirty()) e.preventDefault(); });
window.addEventListener('DOMContentLoaded', () => {
  // The skip link moves focus to the content without touching the route.
  document.querySelector('.skip').addEventListener('click', (e) => { e.preventDefault(); main().focus(); });
  render();
});
