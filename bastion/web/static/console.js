// console.js: the auditor console's behaviour, attached to server-rendered
// pages. Plain ES2020, no framework, no build step. Every recorded string is
// hostile: the DOM is built with createElement/textContent only (no
// innerHTML, no eval), so nothing recorded can become markup or script.
//
// CONTRACT with the server (bastion/src/web):
// - Scripts, in this order, both `defer`: /assets/player.js (asciinema
//   player, defines window.AsciinemaPlayer), then /assets/console.js. Styles:
//   /assets/player.css, /assets/console.css. The CSP must allow wasm for the
//   player's terminal emulator: `script-src 'self' 'wasm-unsafe-eval'`.
// - Any page: <form data-confirm="question"> asks confirm(question) before
//   it submits; cancelled, nothing is sent.
// - Player page: <div id="player" data-cast-url="/s/ID/cast?ch=N"
//   data-duration="SECONDS" data-start="SECONDS" data-input="1|0">.
//   console.js fetches GET data-cast-url + "&from=" + T (T: seconds into the
//   session, 3 decimals) and expects JSON
//     {"cast": "<asciicast v2>", "from": F, "until": U, "next": N|null,
//      "input": [[t, "text"], ...]}
//   where the cast covers session time [F, U) with event times relative to
//   F (F <= T), `next` is the T of the following window (null: last one),
//   and input times t are absolute seconds into the session.
//   console.js adds after #player a bar #player-controls (play/pause, range
//   input #seek from 0 to data-duration, time label #time "+HH:MM:SS",
//   speed buttons 0.5x 1x 2x 4x, idle-cap checkbox #idle-cap); with
//   data-input="1" it lists the window's input in <ol id="keystrokes">
//   (the page's own, or one it adds), each entry a link to its time.
// - Live page: <div id="live" data-ws-path="/s/ID/live/ws">, <p id="live-status">:
//   a player on the WebSocket (see below); data-ended="1" once it ends.
// - A URL hash #t=SECONDS (search results link to it) seeks there, at load
//   and whenever it changes.
'use strict';

(() => {
  const SPEEDS = [0.5, 1, 2, 4];
  const IDLE_CAP = 2; // seconds; longer pauses are shortened while checked

  // An element with attributes and optional text; never parses markup.
  function el(tag, attrs = {}, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // "+HH:MM:SS" for seconds into the session.
  function clock(t) {
    const s = Math.max(0, Math.floor(Number(t) || 0));
    const two = (n) => String(n).padStart(2, '0');
    return '+' + two(Math.floor(s / 3600)) + ':' + two(Math.floor(s / 60) % 60) + ':' + two(s % 60);
  }

  // Control, bidi and invisible characters shown as visible marks, so a
  // recorded keystroke cannot reorder or hide the text around it.
  const NAMED = { '\r': '⏎', '\n': '↵', '\t': '⇥', '\x1b': '⎋', '\x7f': '⌫' };
  function visible(s) {
    return String(s).replace(
      /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/gu,
      (c) => NAMED[c] || '\\u{' + c.codePointAt(0).toString(16) + '}',
    );
  }

  // Confirmation before submitting (reviews and other irreversible actions).
  for (const form of document.querySelectorAll('form[data-confirm]')) {
    form.addEventListener('submit', (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }

  // The player's idle cap shortens gaps, so its clock runs behind the
  // recording's. Event times raw and capped, the player's rule repeated
  // (every gap before an event, the first included, cut to `limit`), map its
  // clock back to recording time.
  function timeMap(cast, limit) {
    const raw = [0];
    const cap = [0];
    if (!Number.isFinite(limit)) return { raw, cap };
    let prev = 0;
    for (const line of cast.split('\n').slice(1)) {
      if (line[0] !== '[') continue;
      let t;
      try {
        t = Number(JSON.parse(line)[0]);
      } catch (_) {
        continue;
      }
      if (!Number.isFinite(t)) continue;
      cap.push(cap[cap.length - 1] + Math.max(0, Math.min(t - prev, limit)));
      raw.push(t);
      prev = t;
    }
    return { raw, cap };
  }
  function toRaw(map, c) {
    let lo = 0;
    let hi = map.cap.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (map.cap[mid] <= c) lo = mid;
      else hi = mid - 1;
    }
    return map.raw[lo] + (c - map.cap[lo]);
  }

  const box = document.getElementById('player');
  if (box && box.dataset.castUrl && window.AsciinemaPlayer) setUpPlayer(box);

  // Live view: <div id="live" data-ws-path="/s/ID/live/ws"> and a status
  // line <p id="live-status">. The player's websocket driver speaks the
  // server's asciicast v2 lines (protocol "v2.asciicast") and shows each at
  // once (bufferTime 0: a watcher wants now, not smooth). Each output
  // event is also counted on the box (data-events) for tests and the
  // status line.
  const live = document.getElementById('live');
  if (live && live.dataset.wsPath && window.AsciinemaPlayer) {
    const status = document.getElementById('live-status');
    const url = 'wss://' + location.host + live.dataset.wsPath;
    const screen = el('div', { class: 'player-screen' });
    live.replaceChildren(screen);
    const player = AsciinemaPlayer.create({ driver: 'websocket', url, bufferTime: 0 }, screen, {
      fit: 'width',
      autoPlay: true,
      controls: false,
      terminalFontFamily: 'monospace',
    });
    if (status) status.textContent = 'connecting…';
    // Streaming means this page is a watcher now: a held session is let in.
    player.addEventListener('playing', () => {
      if (status) status.textContent = 'live: you are watching';
      for (const held of document.querySelectorAll('p.held')) held.remove();
    });
    player.addEventListener('ended', () => {
      live.dataset.ended = '1';
      if (status) status.textContent = 'the session ended';
    });
  }

  function setUpPlayer(box) {
    const castUrl = box.dataset.castUrl;
    const duration = Math.max(0, Number(box.dataset.duration) || 0);
    const st = { speed: 1, idle: true, win: null, map: null, player: null, playing: false, seq: 0, dragging: false };

    const controls = el('div', { id: 'player-controls', class: 'player-controls' });
    const playBtn = el('button', { type: 'button', id: 'play', class: 'play' }, 'Play');
    const seek = el('input', { type: 'range', id: 'seek', min: 0, max: duration, step: 0.1, value: 0 });
    seek.setAttribute('aria-label', 'Position in the session');
    const label = el('span', { id: 'time', class: 'time' }, clock(0));
    const total = el('span', { class: 'time-total' }, '/ ' + clock(duration));
    const speeds = el('span', { class: 'speeds', role: 'group', 'aria-label': 'Speed' });
    for (const s of SPEEDS) {
      const b = el('button', { type: 'button', 'data-speed': s, 'aria-pressed': s === st.speed }, s + '×');
      b.addEventListener('click', () => {
        st.speed = s;
        for (const o of speeds.children) o.setAttribute('aria-pressed', String(o === b));
        remount();
      });
      speeds.append(b);
    }
    const idle = el('input', { type: 'checkbox', id: 'idle-cap' });
    idle.checked = st.idle;
    const idleLabel = el('label', { for: 'idle-cap' }, ' skip pauses over ' + IDLE_CAP + ' s');
    idleLabel.prepend(idle);
    const error = el('p', { class: 'player-error', role: 'alert' });
    error.hidden = true;
    controls.append(playBtn, seek, label, total, speeds, idleLabel);
    box.after(controls, error);

    let keys = null;
    if (box.dataset.input === '1') {
      keys = document.getElementById('keystrokes');
      if (!keys) {
        keys = el('ol', { id: 'keystrokes', class: 'keystrokes' });
        error.after(keys);
      }
    }

    const clamp = (t) => Math.min(Math.max(0, Number(t) || 0), duration);
    // Where playback is now, in seconds into the session.
    function now() {
      if (!st.player || !st.win) return clamp(seek.value);
      const c = st.player.getCurrentTime();
      return typeof c === 'number' ? clamp(st.win.from + toRaw(st.map, c)) : clamp(seek.value);
    }
    function show(t) {
      seek.value = String(t);
      label.textContent = clock(t);
    }
    function setPlaying(on) {
      st.playing = on;
      playBtn.textContent = on ? 'Pause' : 'Play';
    }

    // Fetches the window holding T; a later request wins over an earlier one.
    async function load(t, play) {
      const seq = ++st.seq;
      t = clamp(t);
      show(t);
      let win;
      try {
        const res = await fetch(castUrl + '&from=' + encodeURIComponent(t.toFixed(3)), {
          credentials: 'same-origin',
          headers: { Accept: 'application/json' },
        });
        if (!res.ok) throw new Error('HTTP ' + res.status);
        win = await res.json();
        if (typeof win.cast !== 'string' || !Number.isFinite(win.from)) throw new Error('bad window');
      } catch (e) {
        if (seq === st.seq) fail('Cannot load the recording at ' + clock(t) + ': ' + e.message);
        return;
      }
      if (seq !== st.seq) return;
      error.hidden = true;
      st.win = win;
      mount(t, play);
      if (keys) listInput(Array.isArray(win.input) ? win.input : []);
    }

    // A fresh player on the current window, at T (speed and idle cap are
    // creation options, so changing them means a new player).
    function mount(t, play) {
      const w = st.win;
      if (st.player) st.player.dispose();
      const screen = el('div', { class: 'player-screen' });
      box.replaceChildren(screen);
      const limit = st.idle ? IDLE_CAP : Infinity;
      st.map = timeMap(w.cast, limit);
      const p = AsciinemaPlayer.create({ data: w.cast }, screen, {
        idleTimeLimit: limit,
        fit: 'width',
        speed: st.speed,
        autoPlay: play,
        preload: true,
        controls: false,
        startAt: Math.max(0, t - w.from),
        // Show the screen at T before Play is pressed, so a seek shows where
        // it landed (the player's poster at exactly T leaves out the window's
        // first event, the screen at its keyframe: hence the 10 ms).
        poster: 'npt:' + (Math.max(0, t - w.from) + 0.01).toFixed(3),
      });
      st.player = p;
      setPlaying(false);
      p.addEventListener('playing', () => st.player === p && setPlaying(true));
      p.addEventListener('pause', () => st.player === p && setPlaying(false));
      p.addEventListener('ended', () => {
        if (st.player !== p) return;
        setPlaying(false);
        if (w.next !== null && w.next !== undefined) load(w.next, true);
      });
    }

    function remount() {
      if (st.win) mount(now(), st.playing);
    }

    // Within the loaded window no fetch is needed.
    function seekTo(t) {
      t = clamp(t);
      const w = st.win;
      if (w && t >= w.from && t < w.until) {
        show(t);
        mount(t, st.playing);
      } else {
        load(t, st.playing);
      }
    }

    function fail(msg) {
      error.textContent = msg;
      error.hidden = false;
    }

    function listInput(entries) {
      const items = [];
      for (const entry of entries) {
        if (!Array.isArray(entry) || !Number.isFinite(entry[0])) continue;
        const li = el('li');
        const at = el('a', { href: '#t=' + entry[0].toFixed(1), class: 'at' }, clock(entry[0]));
        li.append(at, ' ', el('span', { class: 'keys' }, visible(entry[1])));
        items.push(li);
      }
      keys.replaceChildren(...items);
    }

    function hashTime() {
      const m = /^#t=(\d+(?:\.\d+)?)$/.exec(window.location.hash);
      return m ? Number(m[1]) : null;
    }

    playBtn.addEventListener('click', () => {
      if (!st.player) return;
      if (st.playing) st.player.pause();
      else st.player.play();
    });
    seek.addEventListener('input', () => {
      st.dragging = true;
      label.textContent = clock(seek.value);
    });
    seek.addEventListener('change', () => {
      st.dragging = false;
      seekTo(Number(seek.value));
    });
    idle.addEventListener('change', () => {
      st.idle = idle.checked;
      remount();
    });
    window.addEventListener('hashchange', () => {
      const t = hashTime();
      if (t !== null) seekTo(t);
    });
    setInterval(() => {
      if (st.playing && !st.dragging) show(now());
    }, 250);

    const start = hashTime();
    load(start !== null ? start : Number(box.dataset.start) || 0, false);
  }
})();
