// The chat page: wires the connection, the conversation and the controls.

import { Connection } from './connection.js';
import { ConversationView, describeError } from './conversation.js';

const $ = (id) => document.getElementById(id);
const input = $('input');
const send = $('send');
const stop = $('stop');
const status = $('status');

// The codes of a message that was not taken (no turn, no `accepted`).
const REFUSALS = new Set(['bad_request', 'too_large', 'busy', 'unavailable']);

let connected = false;
let session = null;

const view = new ConversationView($('log'), $('empty'), updateControls);

function updateControls() {
  send.disabled = !connected;
  stop.disabled = !connected || !view.running;
}

function setStatus(text, offline = false) {
  status.textContent = text;
  status.classList.toggle('offline', offline);
}

// The tools a message may use: absent when every source is chosen (then the MCP
// tools too), else the chosen sources and the MCP tools.
const sources = { all: [], mcp: [] };

function chosenTools() {
  const chosen = [...document.querySelectorAll('#source-list input:checked')].map((box) => box.value);
  if (chosen.length === sources.all.length) return undefined;
  return [...chosen, ...sources.mcp];
}

async function loadSources() {
  try {
    const [list, tools] = await Promise.all([
      fetch('/get_data_source').then((r) => r.json()),
      fetch('/tools').then((r) => (r.ok ? r.json() : [])),
    ]);
    sources.all = list.map((source) => source.id);
    sources.mcp = tools.filter((tool) => tool.kind === 'mcp').map((tool) => tool.name);
    const container = $('source-list');
    container.replaceChildren();
    for (const source of list) {
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.value = source.id;
      box.checked = true;
      label.append(box, ` ${source.name}`);
      if (source.description) label.title = source.description;
      container.append(label);
    }
  } catch {
    $('source-list').textContent = 'The sources could not be loaded.';
  }
}

function onFrame(frame) {
  switch (frame.type) {
    case 'session':
      if (session && session !== frame.session_id) view.clear();
      session = frame.session_id;
      break;
    case 'history':
      view.showHistory(frame.messages ?? []);
      break;
    case 'accepted':
      view.accepted(frame.turn_id);
      break;
    case 'error':
      if (frame.turn_id) {
        view.onTurnFrame(frame);
      } else if (frame.code === 'not_found' && /session/.test(frame.message ?? '')) {
        view.clear();
        view.notice('That conversation is no longer available; this is a new one.');
      } else if (frame.code === 'not_found') {
        // A Stop that arrived after its answer ended: nothing to say.
      } else if (!(REFUSALS.has(frame.code) && view.refused(frame))) {
        view.notice(describeError(frame));
      }
      break;
    default:
      if (frame.turn_id) view.onTurnFrame(frame);
  }
  updateControls();
}

function onState(state, detail) {
  connected = state === 'open';
  if (state === 'open') setStatus('Connected');
  if (state === 'connecting') setStatus('Connecting…');
  if (state === 'waiting') {
    const seconds = Math.max(1, Math.round(detail.wait / 1000));
    const hint = detail.failures >= 3
      ? ' If this server requires an access token, set it in Settings.'
      : '';
    setStatus(`Disconnected. Reconnecting in ${seconds} s…${hint}`, true);
  }
  updateControls();
}

const connection = new Connection({ onFrame, onState });

function submit() {
  const text = input.value;
  if (!text.trim() || !connected) return;
  const frame = { type: 'message', text };
  const tools = chosenTools();
  if (tools) frame.tools = tools;
  if (!connection.send(frame)) return;
  view.asked(text);
  input.value = '';
  input.focus();
}

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  submit();
});
input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
stop.addEventListener('click', () => connection.send({ type: 'cancel' }));
$('new-conversation').addEventListener('click', () => {
  session = null;
  view.clear();
  connection.forget();
  input.focus();
});
$('token').value = connection.token;
$('save-token').addEventListener('click', () => {
  connection.token = $('token').value.trim();
  connection.restart();
});

loadSources();
connection.open();
input.focus();
