// The page's whole client side: subscribe to a list (a stream group) and to its summary (an item)
// with the published browser client, and render each state it hands us.
import { Stream } from '@motiadev/stream-client-browser';

const params = new URLSearchParams(location.search);
const server = params.get('ws') || 'ws://127.0.0.1:3112/';
const user = params.get('user') || 'guest';
const list = params.get('list') || 'inbox';

const $ = (id) => document.getElementById(id);
$('list').textContent = list;
$('user').textContent = user;
$('server').textContent = server;
$('try').textContent = [
  `.venv/bin/iii-stream call stream::set '${JSON.stringify({ stream_name: 'todo', group_id: list, item_id: 'milk', data: { id: 'milk', title: 'Buy milk', done: false } })}'`,
  `.venv/bin/iii-stream call stream::update '${JSON.stringify({ stream_name: 'todo', group_id: list, item_id: 'milk', ops: [{ type: 'set', path: 'done', value: true }] })}'`,
  `.venv/bin/iii-stream call stream::delete '${JSON.stringify({ stream_name: 'todo', group_id: list, item_id: 'milk' })}'`,
].join('\n');

// The token rides in Sec-WebSocket-Protocol: "Authorization, <user>" (the example's auth function reads it).
const stream = new Stream(server, { protocols: ['Authorization', user] });
const todos = stream.subscribeGroup('todo', list);
const summary = stream.subscribeItem('todo-summary', list, 'summary');

function renderTodos(items) {
  document.body.dataset.status = 'live'; // the first state is the join's sync
  $('status').textContent = 'live';
  const sorted = [...items].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  $('todos').replaceChildren(
    ...sorted.map((item) => {
      const li = document.createElement('li');
      li.dataset.id = item.id;
      li.classList.toggle('done', Boolean(item.done));
      const mark = document.createElement('span');
      mark.className = 'mark';
      mark.textContent = item.done ? '✓' : '○';
      const title = document.createElement('span');
      title.className = 'title';
      title.textContent = item.title ?? JSON.stringify(item);
      li.append(mark, title);
      return li;
    }),
  );
  $('empty').hidden = sorted.length > 0;
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
