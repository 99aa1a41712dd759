// The page's one WebSocket to /ws: it re-attaches to the conversation kept in
// this browser, and reconnects by itself, waiting longer after each failure.

const SESSION_KEY = 'parlor.session';
const TOKEN_KEY = 'parlor.token';
const FIRST_DELAY_MS = 500;
const LONGEST_DELAY_MS = 10000;

export class Connection {
  // `onFrame(frame)` gets every frame; `onState(state, detail)` hears of
  // 'connecting', 'open' and 'waiting' (with the delay before the next try).
  constructor({ onFrame, onState }) {
    this.onFrame = onFrame;
    this.onState = onState;
    this.socket = null;
    this.delay = FIRST_DELAY_MS;
    this.failures = 0;
    this.timer = null;
  }

  get sessionId() { return localStorage.getItem(SESSION_KEY); }
  set sessionId(id) {
    if (id) localStorage.setItem(SESSION_KEY, id); else localStorage.removeItem(SESSION_KEY);
  }

  get token() { return localStorage.getItem(TOKEN_KEY) || ''; }
  set token(token) {
    if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
  }

  open() {
    clearTimeout(this.timer);
    const query = new URLSearchParams();
    if (this.sessionId) query.set('session_id', this.sessionId);
    if (this.token) query.set('access_token', this.token);
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/ws?${query}`);
    this.socket = socket;
    this.onState('connecting');
    socket.addEventListener('open', () => {
      this.delay = FIRST_DELAY_MS;
      this.failures = 0;
      this.onState('open');
    });
    socket.addEventListener('message', (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame.type === 'session') this.sessionId = frame.session_id;
      this.onFrame(frame);
    });
    socket.addEventListener('close', () => {
      if (this.socket !== socket) return; // replaced on purpose
      this.socket = null;
      this.failures += 1;
      const wait = this.delay * (0.75 + Math.random() / 2);
      this.delay = Math.min(this.delay * 2, LONGEST_DELAY_MS);
      this.onState('waiting', { wait, failures: this.failures });
      this.timer = setTimeout(() => this.open(), wait);
    });
  }

  // Reconnects now (a new token, or a new conversation).
  restart() {
    const old = this.socket;
    this.socket = null;
    old?.close();
    this.delay = FIRST_DELAY_MS;
    this.open();
  }

  // Starts a new conversation: the next connection gets a new session.
  forget() {
    this.sessionId = null;
    this.restart();
  }

  // Sends `frame`; false if there is no open connection.
  send(frame) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }
}
