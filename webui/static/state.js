// state.js: what every screen shares: who is signed in, navigation, the
// current screen's life (timers to stop, late answers to drop) and unsaved
// edits.

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

let cleanups = [];
let generation = 0;

// onLeave registers something to stop (a timer) when the current screen is
// left.
export function onLeave(fn) { cleanups.push(fn); }

// newScreen ends the current screen (its cleanups run) and returns alive(),
// true until the next screen starts: a screen checks it after every await,
// so that an answer arriving late never draws over the screen shown now.
export function newScreen() {
  for (const f of cleanups) f();
  cleanups = [];
  const mine = ++generation;
  dirty = false;
  return () => mine === generation;
}

let dirty = false;
// setDirty marks the screen as holding unsaved edits (or not).
export function setDirty(v) { dirty = v; }
// isDirty reports whether leaving would lose unsaved edits.
export function isDirty() { return dirty; }
