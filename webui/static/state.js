// state.js: what every screen shares: who is signed in, navigation, and the
// timers a screen runs while it is shown.

// session is who is signed in: name, scope and the activation delay from
// GET /v1/whoami.
export const session = { name: '', scope: '', delay: 300 };

// canWrite reports whether the signed-in token may save.
export function canWrite() { return session.scope === 'write'; }

// go navigates to a route with parameters (re-rendering when it is the
// current one).
export function go(route, params = {}) {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== ''));
  const target = '#/' + route + (q.toString() ? '?' + q : '');
  if (location.hash === target) window.dispatchEvent(new Event('hashchange'));
  else location.hash = target;
}

let leave = () => {};
// onLeave registers what to stop (timers, pending requests) when the screen
// is left.
export function onLeave(fn) { leave = fn; }
// leaving runs and clears it.
export function leaving() { const f = leave; leave = () => {}; f(); }
