// The page's whole client side: subscribe to a list (a stream group) and to its summary (an item) with the
// published browser client and render each state it hands us; add, toggle and delete through the app's HTTP
// routes. A write is never drawn by hand: it comes back over the socket, to this page and every other one.
import { Stream } from '@motiadev/stream-client-browser';

const params = new URLSearchParams(location.search);
const server = params.get('ws') || 'ws://127.0.0.1:3112/';
const api = (params.get('api') || 'http://127.0.0.1:3000').replace(/\/+$/, '');
const user = params.get('user') || 'guest';
const list = params.get('list') || 'inbox';

const $ = (id) => document.getElementById(id);
$('list').textContent = list;
$('user').textContent = user;
$('server').textContent = server;
const route = `${api}/todos/${encodeURIComponent(list)}`;
$('try').textContent = [
  `curl -X POST ${route} -H 'Authorization: Bearer ${user}' -H 'Content-Type: application/json' -d '{"title":"Buy milk"}'`,
  `curl -X PATCH ${route}/ITEM_ID -H 'Authorization: Bearer ${user}'        # toggles it`,
  `curl -X DELETE ${route}/ITEM_ID -H 'Authorization: Bearer ${user}'`,
  '# or the stream functions themselves:',
  `.venv/bin/iii-stream call stream::set '${JSON.stringify({ stream_name: 'todo', group_id: list, item_id: 'milk', data: { id: 'milk', title: 'Buy milk', done: false } })}'`,
].join('\n');

// The token rides in Sec-WebSocket-Protocol: "Authorization, <user>" (the example's auth function reads it).
const stream = new Stream(server, { protocols: ['Authorization', user] });
const todos = stream.subscribeGroup('todo', list);
const summary = stream.subscribeItem('todo-summary', list, 'summary');

// --- writes: the app's routes (app.py), with the same token as a bearer token ---------------------------------
async function call(method, path = '', body = undefined) {
  const headers = { Authorization: `Bearer ${user}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(route + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return showError(`${method} ${route + path} failed (is iii-stream local running, with --http-port as in ?api=?)`);
  }
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try { message = JSON.parse(text).message ?? text; } catch { /* not JSON */ }
    return showError(`${method} ${route + path}: ${response.status} ${message}`);
  }
  showError('');
  return response.status === 204 ? {} : response.json();
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
  return null;
}

$('add').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('new-title');
  const title = input.value.trim();
  if (!title) return;
  const button = event.target.querySelector('button');
  button.disabled = true;
  try {
    if (await call('POST', '', { title })) input.value = '';
  } finally {
    button.disabled = false;
    input.focus();
  }
});

// --- reads: whatever the subscriptions hand us --------------------------------------------------------------
const order = (a, b) => (a.created ?? 0) - (b.created ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function renderTodos(items) {
  document.body.dataset.status = 'live'; // the first state is the join's sync
  $('status').textContent = 'live';
  const sorted = [...items].sort(order);
  $('todos').replaceChildren(...sorted.map(renderItem));
  $('empty').hidden = sorted.length > 0;
}

function renderItem(item) {
  const li = document.createElement('li');
  li.dataset.id = item.id;
  li.classList.toggle('done', Boolean(item.done));
  const title = item.title ?? JSON.stringify(item);
  const toggle = document.createElement('input');
  toggle.type = 'checkbox';
  toggle.className = 'toggle';
  toggle.checked = Boolean(item.done);
  toggle.setAttribute('aria-label', `Done: ${title}`);
  // Set, not toggle: the request says what this page showed the user, whatever other pages did meanwhile.
  toggle.addEventListener('change', async () => {
    const changed = await call('PATCH', `/${encodeURIComponent(item.id)}`, { done: toggle.checked });
    if (!changed) toggle.checked = Boolean(item.done); // refused: show what is stored
  });
  const text = document.createElement('span');
  text.className = 'title';
  text.textContent = title;
  li.append(toggle, text);
  if (item.by) {
    const by = document.createElement('span');
    by.className = 'by';
    by.textContent = item.by;
    li.append(by);
  }
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'delete';
  remove.textContent = '✕';
  remove.title = 'Delete';
  remove.setAttribute('aria-label', `Delete: ${title}`);
  remove.addEventListener('click', () => call('DELETE', `/${encodeURIComponent(item.id)}`));
  li.append(remove);
  return li;
}

function renderSummary(value) {
  $('summary').textContent = value ? `${value.open} to do, ${value.done} done` : '';
}

todos.addChangeListener(renderTodos);
// The client ignores an `unauthorized` answer without a trace, so say what no sync usually means.
setTimeout(() => {
  if (document.body.dataset.status !== 'live') {
    $('status').textContent = 'no sync yet: is iii-stream local running there, and is this list yours to join?';
  }
}, 3000);
summary.addChangeListener(renderSummary);
addEventListener('pagehide', () => stream.close());
