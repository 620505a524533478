// Drives the published @motiadev/stream-client-node against a running server, for test_node_client.py.
//
//   node watch.mjs '<config JSON>'
//   config: {url, protocols?, subs: [{name, stream, group, id?, events?: [type]}], guard?: true, lifetime_ms?: 20000}
//
// Prints one JSON object per line on stdout:
//   {"event":"ready", "states", "unauthorized", "custom"}  once every subscription got its sync or `unauthorized`
//   {"event":"state", "matched", "states", "unauthorized", "custom"}  the answer to a "wait" command
//   {"event":"error", "message", "states"}  the client threw (a refused handshake does); exit code 2
//   {"event":"timeout", ...}  lifetime_ms passed; exit code 4
//   {"event":"closed"}  after "close"; exit code 0
// Reads one JSON command per line on stdin:
//   {"cmd":"wait", "expect": {name: state}, "timeout_ms"}  waits until every named state equals the
//       expected one (group states compared sorted by id), or the timeout; then answers "state"
//   {"cmd":"close"}  closes the Stream (no reconnect) and exits
// With guard: false, nothing catches the client's errors: a refused handshake crashes the process
// (the published client registers no 'error' listener on its socket).
import { createInterface } from 'node:readline';
import { Stream } from '@motiadev/stream-client-node';

const config = JSON.parse(process.argv[2]);
const guard = config.guard !== false;
const print = (message) => process.stdout.write(JSON.stringify(message) + '\n');

const stream = new Stream(config.url, config.protocols ? { protocols: config.protocols } : undefined);
const subs = config.subs.map((spec) => {
  const subscription = spec.id === undefined
    ? stream.subscribeGroup(spec.stream, spec.group)
    : stream.subscribeItem(spec.stream, spec.group, spec.id);
  const entry = { spec, subscription, synced: false, unauthorized: false, custom: [] };
  subscription.addChangeListener(() => { entry.synced = true; check(); });
  for (const type of spec.events ?? []) {
    subscription.onEvent(type, (data) => { entry.custom.push({ type, data }); check(); });
  }
  return entry;
});

// A tap on the raw socket, only to see `unauthorized` frames: the client ignores them without a trace.
stream.ws.ws.on('message', (raw) => {
  let frame;
  try { frame = JSON.parse(raw.toString()); } catch { return; }
  if (frame?.event?.type !== 'unauthorized') return;
  for (const entry of subs) {
    const { stream: name, group, id } = entry.spec;
    if (frame.streamName === name && frame.groupId === group && (frame.id ?? undefined) === id) entry.unauthorized = true;
  }
  check();
});

const normalize = (entry) => {
  const state = entry.subscription.getState();
  if (entry.spec.id !== undefined || !Array.isArray(state)) return state;
  return [...state].sort((a, b) => (String(a?.id) < String(b?.id) ? -1 : String(a?.id) > String(b?.id) ? 1 : 0));
};
const canonical = (value) => JSON.stringify(value, (key, v) =>
  v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v);
const snapshot = () => ({
  states: Object.fromEntries(subs.map((entry) => [entry.spec.name, normalize(entry)])),
  unauthorized: subs.filter((entry) => entry.unauthorized).map((entry) => entry.spec.name),
  custom: Object.fromEntries(subs.map((entry) => [entry.spec.name, entry.custom])),
});

let readyPrinted = false;
let waiting = null; // {expect, timer}
function matches(expect) {
  return Object.entries(expect).every(([name, value]) => {
    const entry = subs.find((e) => e.spec.name === name);
    return entry && canonical(normalize(entry)) === canonical(value);
  });
}
function check() {
  if (!readyPrinted && subs.every((entry) => entry.synced || entry.unauthorized)) {
    readyPrinted = true;
    print({ event: 'ready', ...snapshot() });
  }
  if (waiting && matches(waiting.expect)) answer(true);
}
function answer(matched) {
  clearTimeout(waiting.timer);
  waiting = null;
  print({ event: 'state', matched, ...snapshot() });
}

let finishing = false;
function finish(code) {
  if (finishing) return;
  finishing = true;
  try { stream.close(); } catch { /* the socket may be gone already */ }
  clearTimeout(lifetime);
  process.stdout.write('', () => process.exit(code));
}

const lifetime = setTimeout(() => { print({ event: 'timeout', ...snapshot() }); finish(4); }, config.lifetime_ms ?? 20000);

if (guard) {
  process.on('uncaughtException', (error) => {
    if (finishing) return; // closing a socket that is still connecting emits one more error
    print({ event: 'error', message: String(error?.message ?? error), ...snapshot() });
    finish(2);
  });
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  if (command.cmd === 'wait') {
    waiting = { expect: command.expect, timer: setTimeout(() => answer(false), command.timeout_ms ?? 5000) };
    check();
  } else if (command.cmd === 'close') {
    print({ event: 'closed' });
    finish(0);
  }
}).on('close', () => finish(0)); // stdin closed: the test is gone
