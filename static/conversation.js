// The conversation on the page: questions, and for each turn its tool steps,
// streamed answer, references and how it ended.

import { renderAnswer } from './render.js';

// What each error code means to a person; the server's own message follows it.
const ERROR_TEXTS = {
  bad_request: 'The message was refused.',
  too_large: 'That message is too long.',
  busy: 'The server is busy. Try again in a moment.',
  not_found: 'Not found.',
  unavailable: 'The service is unavailable right now. Try again shortly.',
  upstream: 'The model failed to answer.',
  timeout: 'The answer took too long.',
};

export function describeError(frame) {
  const plain = ERROR_TEXTS[frame.code] ?? 'Something went wrong.';
  return frame.message ? `${plain} (${frame.message})` : plain;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// One turn: its question and its answer as they arrive.
class Turn {
  constructor(view, id, question) {
    this.view = view;
    this.id = id;
    this.key = view.nextKey();
    this.question = question;
    this.running = false;
    this.box = null;
    this.restart();
  }

  // The answer's box, made when the first thing of the answer arrives.
  answerBox() {
    if (this.box) return this.box;
    const box = element('article', 'message assistant');
    box.setAttribute('aria-label', 'Answer');
    this.tools = element('ul', 'tools');
    this.reasoning = element('p', 'reasoning');
    this.answer = element('div', 'answer');
    this.references = element('details', 'references');
    this.ending = element('p', 'note');
    box.append(this.tools, this.reasoning, this.answer, this.references, this.ending);
    this.references.hidden = true;
    this.box = box;
    const after = this.question?.nextSibling ?? null;
    this.view.log.insertBefore(box, after);
    return box;
  }

  // Forgets the answer so far (a `reset`: it comes again whole).
  restart() {
    this.text = '';
    this.citations = new Map();
    this.toolSteps = new Map();
    if (!this.box) return;
    this.tools.replaceChildren();
    this.reasoning.replaceChildren();
    this.answer.replaceChildren();
    this.references.replaceChildren();
    this.references.hidden = true;
    this.ending.replaceChildren();
  }

  begin() {
    this.running = true;
    this.question?.classList.remove('pending');
    this.answerBox();
  }

  chunk(text) {
    this.answerBox();
    this.text += text;
    this.view.scheduleRender(this);
  }

  render() {
    this.answer.innerHTML = renderAnswer(this.text, this.citations, this.key);
    this.view.follow();
  }

  tool(frame) {
    this.answerBox();
    let step = this.toolSteps.get(frame.call_id);
    if (!step) {
      step = element('li');
      this.toolSteps.set(frame.call_id, step);
      this.tools.append(step);
    }
    const label = frame.label || frame.name;
    const verb = { working: 'Searching', done: 'Searched', error: 'Could not search' }[frame.status]
      ?? frame.status;
    step.className = frame.status;
    step.textContent = `${verb}: ${label}`;
  }

  showReferences(frame) {
    this.answerBox();
    const list = element('ol');
    for (const source of frame.sources ?? []) {
      for (const item of source.items ?? []) {
        const number = this.citations.size + 1;
        this.citations.set(item.id, number);
        const entry = element('li');
        entry.id = `cite-${this.key}-${number}`;
        const title = item.title || source.name;
        if (item.url && /^https?:\/\//i.test(item.url)) {
          const link = element('a', '', title);
          link.href = item.url;
          link.target = '_blank';
          link.rel = 'noopener noreferrer';
          entry.append(link);
        } else {
          entry.append(element('strong', '', title));
        }
        entry.append(` — ${source.name}`);
        if (item.snippet) entry.append(element('span', 'snippet', item.snippet));
        list.append(entry);
      }
    }
    const summary = element('summary', '', `References (${this.citations.size})`);
    this.references.replaceChildren(summary, list);
    this.references.hidden = this.citations.size === 0;
    this.view.scheduleRender(this);
  }

  think(text) {
    this.answerBox();
    this.reasoning.textContent += text;
  }

  end(frame) {
    this.running = false;
    this.answerBox();
    this.render();
    if (frame.type === 'done') {
      if (frame.finish_reason === 'cancelled') this.ending.textContent = 'Stopped.';
      if (frame.finish_reason === 'length') this.ending.textContent = 'The answer was cut short.';
    } else {
      this.ending.className = 'failed';
      this.ending.textContent = describeError(frame);
    }
  }
}

export class ConversationView {
  constructor(log, empty, onChange) {
    this.log = log;
    this.empty = empty;
    this.onChange = onChange;
    this.turns = new Map();
    this.waiting = []; // questions sent, not yet accepted, oldest first
    this.keys = 0;
    this.toRender = new Set();
  }

  nextKey() { this.keys += 1; return `t${this.keys}`; }

  get running() {
    for (const turn of this.turns.values()) if (turn.running) return true;
    return false;
  }

  clear() {
    this.turns.clear();
    this.waiting = [];
    this.log.replaceChildren(this.empty);
    this.onChange();
  }

  questionBox(text, pending) {
    this.empty.remove();
    const box = element('article', pending ? 'message user pending' : 'message user', text);
    box.setAttribute('aria-label', 'Question');
    this.log.append(box);
    this.follow();
    return box;
  }

  // A question this page sent: shown now, its turn known once accepted.
  asked(text) {
    this.waiting.push(this.questionBox(text, true));
  }

  // The conversation so far, as a re-attached session tells it.
  showHistory(messages) {
    this.clear();
    for (const message of messages) {
      if (message.role === 'user') {
        const turn = new Turn(this, message.turn_id, this.questionBox(message.content, false));
        if (message.turn_id) this.turns.set(message.turn_id, turn);
      } else if (message.role === 'assistant') {
        const turn = (message.turn_id && this.turns.get(message.turn_id)) ?? new Turn(this, null, null);
        turn.answerBox();
        turn.text = message.content;
        turn.render();
      }
    }
  }

  accepted(turnId) {
    let turn = this.turns.get(turnId);
    if (!turn) {
      turn = new Turn(this, turnId, this.waiting.shift() ?? null);
      this.turns.set(turnId, turn);
    } else if (turn.box) {
      // Asked again from its start (after a re-attach): the answer comes whole.
      turn.restart();
    }
    turn.begin();
    this.onChange();
  }

  // A frame of turn `frame.turn_id`.
  onTurnFrame(frame) {
    const turn = this.turns.get(frame.turn_id);
    if (!turn) return;
    switch (frame.type) {
      case 'chunk': turn.chunk(frame.text); break;
      case 'tool': turn.tool(frame); break;
      case 'references': turn.showReferences(frame); break;
      case 'reasoning': turn.think(frame.text); break;
      case 'reset': turn.restart(); break;
      case 'done':
      case 'error':
        turn.end(frame);
        this.onChange();
        break;
      default: break;
    }
  }

  // A message that was not taken: its question says why.
  refused(frame) {
    const box = this.waiting.shift();
    if (!box) return false;
    box.classList.remove('pending');
    box.append(element('p', 'failed', `Not sent: ${describeError(frame)}`));
    return true;
  }

  notice(text) {
    this.empty.remove();
    this.log.append(element('p', 'notice', text));
    this.follow();
  }

  scheduleRender(turn) {
    if (this.toRender.size === 0) {
      requestAnimationFrame(() => {
        for (const pending of this.toRender) pending.render();
        this.toRender.clear();
      });
    }
    this.toRender.add(turn);
  }

  // Keeps the newest part in view while the reader is at the bottom.
  follow() {
    const log = this.log;
    if (log.scrollHeight - log.scrollTop - log.clientHeight < 120) log.scrollTop = log.scrollHeight;
  }
}
