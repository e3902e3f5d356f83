// live-browser.mjs: the browser half of tests/bench/live. Headless Chromium
// (the system's, through playwright-core from tests/web, launched with the
// flags of tests/web/run.mjs, the console's certificate pinned by its SPKI
// hash) logs in to the auditor console once, in one context, and then does
// what the Python half asks, one command a line on stdin:
//
//   {"cmd":"login","code":C}       first, once Chromium is up ({kind:"launched"}):
//                                  the auditor's TOTP code, computed then by the
//                                  Python half so that it is fresh
//   {"cmd":"open","id":ID,"n":N}   open N pages on /s/ID/live (watchers), each
//                                  until its status says "live…"
//   {"cmd":"arm","text":T}         on the first open page, watch #live for T
//                                  (a MutationObserver): answers "armed" at
//                                  once, then "seen" with the page's Date.now()
//                                  when T first appears in the DOM (or
//                                  "missed" after TIMEOUT_MS)
//   {"cmd":"state"}                each open page's status line and text length
//   {"cmd":"close"}                close the open pages (the watchers go)
//   {"cmd":"quit"}
//
//   BASTION_URL BASTION_CERT_SHA256 AUDITOR AUDITOR_PASSWORD
//   [STEP_TIMEOUT_MS=60000] node live-browser.mjs
//
// stdout: one JSON line per answer ({kind:"launched"}, {kind:"ready"} once
// logged in, then opened, armed, seen/missed, state, closed, error);
// diagnostics on stderr.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { servedCertificate } from '../web/run.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'web', 'package.json'));
const { chromium } = require('playwright-core');
const CHROMIUM = process.env.BASTION_CHROMIUM || '/usr/bin/chromium';

const env = process.env;
const baseUrl = (env.BASTION_URL || '').replace(/\/+$/, '');
const stepTimeout = Number(env.STEP_TIMEOUT_MS) || 60000;
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const err = (s) => process.stderr.write(`live-browser: ${s}\n`);

// In the page: start watching #live for `text`; the promise it leaves in
// window.__bench[text] resolves with Date.now() at the first DOM change
// after which #live's text holds it.
function arm(text) {
  const live = document.getElementById('live');
  if (!live) return 'no #live';
  if (live.textContent.includes(text)) return 'present';
  window.__bench = window.__bench || {};
  let done;
  const seen = new Promise((r) => {
    done = r;
  });
  const obs = new MutationObserver(() => {
    if (live.textContent.includes(text)) {
      const at = Date.now();
      obs.disconnect();
      done(at);
    }
  });
  obs.observe(live, { subtree: true, childList: true, characterData: true, attributes: false });
  window.__bench[text] = { seen, stop: () => obs.disconnect() };
  return 'armed';
}

// In the page: the time `text` was seen, or null after `ms`.
function seenAt({ text, ms }) {
  const w = window.__bench && window.__bench[text];
  if (!w) return null;
  return Promise.race([w.seen, new Promise((r) => setTimeout(() => r(null), ms))]).then((at) => {
    w.stop();
    delete window.__bench[text];
    return at;
  });
}

async function main() {
  if (!baseUrl.startsWith('https://127.0.0.1:')) throw new Error(`BASTION_URL must be https on 127.0.0.1: ${baseUrl}`);
  const want = String(env.BASTION_CERT_SHA256 || '').replace(/:/g, '').toLowerCase();
  const der = await servedCertificate(baseUrl);
  const got = crypto.createHash('sha256').update(der).digest('hex');
  if (got !== want) throw new Error(`${baseUrl} serves certificate ${got}, expected ${want}`);
  const spki = new crypto.X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  const spkiHash = crypto.createHash('sha256').update(spki).digest('base64');

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'bastion-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--ignore-certificate-errors-spki-list=${spkiHash}`,
      ],
      viewport: { width: 1100, height: 800 },
    });
    const problems = [];
    const watch = (p) => {
      p.setDefaultTimeout(stepTimeout);
      p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      p.on('console', (m) => {
        if (m.type() === 'error') err(`console error: ${m.text()}`);
      });
    };
    const home = context.pages()[0] || (await context.newPage());
    watch(home);
    await home.goto(`${baseUrl}/login`);

    const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
    const nextLine = async () => {
      const r = await lines.next();
      return r.done ? null : r.value;
    };
    out({ kind: 'launched' });
    const first = JSON.parse((await nextLine()) || '{}');
    if (first.cmd !== 'login' || !/^\d{6,8}$/.test(String(first.code))) throw new Error('expected {"cmd":"login","code":…} first');

    // One login for the whole run (a TOTP code works once): the page posts
    // the form with fetch(), as console-browser.mjs does (a form POST from
    // a no-referrer page carries `Origin: null`, which the console refuses).
    const login = await home.evaluate(async (f) => {
      const r = await fetch('/login', {
        method: 'POST',
        body: new URLSearchParams(f),
        credentials: 'same-origin',
        referrerPolicy: 'same-origin',
        redirect: 'manual',
      });
      return { status: r.status, type: r.type };
    }, { user: env.AUDITOR, password: env.AUDITOR_PASSWORD, code: String(first.code) });
    const cookie = (await context.cookies(baseUrl)).find((c) => c.name === '__Host-bastion');
    if (!cookie) throw new Error(`login refused: ${JSON.stringify(login)}`);
    await home.goto(`${baseUrl}/sessions`);
    if (new URL(home.url()).pathname !== '/sessions') throw new Error(`not logged in: ${home.url()}`);
    await home.goto('about:blank');
    out({ kind: 'ready', chromium: context.browser() ? context.browser().version() : null });

    let pages = [];
    const pending = new Set();
    for (let line = await nextLine(); line !== null; line = await nextLine()) {
      if (!line.trim()) continue;
      let c;
      try {
        c = JSON.parse(line);
      } catch {
        out({ kind: 'error', error: `not JSON: ${line.slice(0, 200)}` });
        continue;
      }
      try {
        if (c.cmd === 'open') {
          const n = Math.min(10, Math.max(1, Number(c.n) || 1));
          if (!/^[\w.-]+$/.test(String(c.id))) throw new Error(`bad session id ${c.id}`);
          const t0 = Date.now();
          const opened = [];
          for (let i = 0; i < n; i++) {
            const p = await context.newPage();
            watch(p);
            pages.push(p);
            await p.goto(`${baseUrl}/s/${c.id}/live`);
            if (new URL(p.url()).pathname !== `/s/${c.id}/live`) throw new Error(`/s/${c.id}/live went to ${p.url()}`);
            opened.push(p);
          }
          // The player has connected and plays: the page is a watcher.
          const status = [];
          for (const p of opened) {
            await p.waitForFunction(
              () => {
                const s = document.getElementById('live-status');
                return document.getElementById('live') && s && s.textContent.startsWith('live');
              },
              null,
              { polling: 20, timeout: stepTimeout },
            );
            status.push(await p.locator('#live-status').textContent());
          }
          out({ kind: 'opened', n, pages: pages.length, ms: Date.now() - t0, status });
        } else if (c.cmd === 'arm') {
          const p = pages[0];
          if (!p) throw new Error('arm: no page open');
          const text = String(c.text);
          const r = await p.evaluate(arm, text);
          if (r !== 'armed') throw new Error(`arm ${text}: ${r}`);
          out({ kind: 'armed', text });
          const ms = Number(c.timeout_ms) || stepTimeout;
          const w = p
            .evaluate(seenAt, { text, ms })
            .then((at) => out(at ? { kind: 'seen', text, at } : { kind: 'missed', text }))
            .catch((e) => out({ kind: 'missed', text, error: String(e.message || e).split('\n')[0] }))
            .finally(() => pending.delete(w));
          pending.add(w);
        } else if (c.cmd === 'state') {
          // A page busy drawing may not answer at once: null after 5 s.
          const state = await Promise.all(
            pages.map((p) =>
              Promise.race([
                p.evaluate(() => ({
                  status: (document.getElementById('live-status') || {}).textContent || null,
                  ended: !!(document.getElementById('live') || { dataset: {} }).dataset.ended,
                  text_len: ((document.getElementById('live') || {}).textContent || '').length,
                })),
                new Promise((r) => setTimeout(() => r(null), 5000)),
              ]).catch(() => null),
            ),
          );
          out({ kind: 'state', state });
        } else if (c.cmd === 'close') {
          await Promise.allSettled([...pending]);
          const n = pages.length;
          const t0 = Date.now();
          await Promise.allSettled(pages.map((p) => p.close({ runBeforeUnload: false })));
          pages = [];
          out({ kind: 'closed', n, ms: Date.now() - t0 });
        } else if (c.cmd === 'quit') {
          break;
        } else {
          throw new Error(`unknown command ${JSON.stringify(c.cmd)}`);
        }
      } catch (e) {
        out({ kind: 'error', cmd: c.cmd, error: String(e && e.message ? e.message : e).split('\n')[0] });
      }
      if (problems.length) out({ kind: 'problems', problems: problems.splice(0) });
    }
    await Promise.allSettled([...pending]);
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`live-browser failed: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  },
);
