// console-browser.mjs: the browser half of tests/bench/console. Headless
// Chromium (the system's, through playwright-core from tests/web, launched
// with the flags of tests/web/run.mjs) logs in to the auditor console and
// opens each session RUNS times: the time from navigating to /s/ID until
// the first window has arrived and the player has drawn its terminal (first
// frame), then from setting the seek bar to its end until the window for
// that time has arrived (when it is not the one loaded) and a new player has
// drawn its terminal (seek to end).
//
//   BASTION_URL BASTION_CERT_SHA256 AUDITOR AUDITOR_PASSWORD CODE
//   SESSIONS='{"small":"ID","big":"ID"}' [SEEK_TEXT=big] RUNS=5 STEP_TIMEOUT_MS=90000
//   node console-browser.mjs
//
// stdout: one JSON line per session ({kind:"session"}) and per load
// ({kind:"run"}); diagnostics on stderr.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { servedCertificate } from '../web/run.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'web', 'package.json'));
const { chromium } = require('playwright-core');
const CHROMIUM = process.env.BASTION_CHROMIUM || '/usr/bin/chromium';

const env = process.env;
const baseUrl = (env.BASTION_URL || '').replace(/\/+$/, '');
const sessions = JSON.parse(env.SESSIONS || '{}');
const runs = Math.min(50, Math.max(1, Number(env.RUNS) || 5));
const stepTimeout = Number(env.STEP_TIMEOUT_MS) || 90000;
// Sessions whose screen at the end must show text once seeked there (none by
// default: asciinema-player 3.18 created with `startAt` and no poster draws
// a blank terminal until Play, at +0 s as at any other moment).
const seekText = (env.SEEK_TEXT || '').split(',');
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

// The player console.js mounted last (`.player-screen` in #player; not the
// one marked `old` before a seek) has drawn its terminal: asciinema-player
// 3.18 draws text into `pre.ap-term-text`, one `span.ap-line` per row (and
// a canvas and an svg for blocks and symbols). `text`: some row must hold a
// non-blank character. The player console.js creates (`startAt`, no poster)
// draws a blank terminal until Play, so the first frame and the seek count
// once the rows are drawn for the window asked for.
function screenDrawn(text) {
  const s = document.querySelector('#player .player-screen');
  if (!s || s.dataset.benchOld) return false;
  const pre = s.querySelector('.ap-term-text');
  if (!pre || !pre.querySelector('.ap-line')) return false;
  return !text || /\S/.test(pre.textContent || '');
}

// Waits for screenDrawn(text); on a timeout says what the player holds.
async function shows(page, what, text) {
  try {
    await page.waitForFunction(screenDrawn, text, { polling: 5, timeout: stepTimeout });
  } catch (e) {
    const dom = await page
      .evaluate(() => (document.getElementById('player') || document.body).outerHTML.slice(0, 3000))
      .catch(() => '?');
    throw new Error(`${what}: the player shows no text (${e.message.split('\n')[0]}); #player: ${dom}`);
  }
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
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(stepTimeout);
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') process.stderr.write(`console error: ${m.text()}\n`);
    });

    // The login form's POST as Chromium sends it carries `Origin: null` (the
    // console's pages say `Referrer-Policy: no-referrer`, and for a form POST
    // the origin is then serialized as "null"), which the console's
    // same-origin check refuses (403). So the page posts the form itself,
    // with fetch() and a referrer policy that keeps the origin; the cookie
    // it sets is the page's. What is measured (the session page, the
    // player) are GETs.
    await page.goto(`${baseUrl}/login`);
    const login = await page.evaluate(async (f) => {
      const r = await fetch('/login', {
        method: 'POST',
        body: new URLSearchParams(f),
        credentials: 'same-origin',
        referrerPolicy: 'same-origin',
        redirect: 'manual',
      });
      return { status: r.status, type: r.type };
    }, { user: env.AUDITOR, password: env.AUDITOR_PASSWORD, code: env.CODE });
    const cookie = (await context.cookies(baseUrl)).find((c) => c.name === '__Host-bastion');
    if (!cookie) throw new Error(`login refused: ${JSON.stringify(login)}`);
    await page.goto(`${baseUrl}/sessions`);
    if (new URL(page.url()).pathname !== '/sessions') throw new Error(`not logged in: ${page.url()}`);

    for (const [name, id] of Object.entries(sessions)) {
      await page.goto(`${baseUrl}/s/${id}`);
      const h3 = await page.locator('#player').evaluate((p) => p.parentElement.querySelector('h3').textContent);
      const bytes = Number((/(\d+) bytes/.exec(h3) || [])[1]);
      const duration = Number(await page.locator('#player').getAttribute('data-duration'));
      out({ kind: 'session', name, id, output_bytes: bytes, duration });
    }

    // Turns between the sessions: small, big, small, big, …
    for (let i = 0; i < runs; i++) {
      for (const [name, id] of Object.entries(sessions)) {
        await page.goto('about:blank');
        const castAt0 = page.waitForResponse((r) => r.url().includes(`/s/${id}/cast?`), { timeout: stepTimeout });
        const t0 = process.hrtime.bigint();
        await page.goto(`${baseUrl}/s/${id}`, { waitUntil: 'commit' });
        const first = await castAt0;
        if (first.status() !== 200) throw new Error(`${name}: /cast answered ${first.status()}`);
        await shows(page, `${name} first frame`, false);
        const firstFrame = ms(t0);
        const castBytes = (await first.body()).length;

        // Seek to the end: the bar to its max, `input` then `change`, as a drag
        // ends. The bar's step is 0.1 s, so its value snaps to the last step at
        // or below the duration; console.js asks for that time.
        await page.evaluate(() => {
          document.querySelector('#player .player-screen').dataset.benchOld = '1';
        });
        // The end may lie in the window already loaded (a short session): then
        // console.js mounts a new player on it without a fetch.
        const ends = [];
        const onEnd = (r) => {
          if (r.url().includes(`/s/${id}/cast?`)) ends.push(r);
        };
        page.on('response', onEnd);
        const t1 = process.hrtime.bigint();
        const want = await page.evaluate(() => {
          const s = document.getElementById('seek');
          s.value = s.max;
          const v = Number(s.value).toFixed(3);
          s.dispatchEvent(new Event('input', { bubbles: true }));
          s.dispatchEvent(new Event('change', { bubbles: true }));
          return v;
        });
        await shows(page, `${name} seek to ${want}`, seekText.includes(name));
        const seek = ms(t1);
        page.off('response', onEnd);
        const endText = await page.evaluate(() =>
          /\S/.test(document.querySelector('#player .player-screen .ap-term-text').textContent || ''),
        );
        let endWin = null;
        if (ends.length) {
          const e = ends[ends.length - 1];
          if (e.status() !== 200) throw new Error(`${name}: ${e.url()} answered ${e.status()}`);
          if (new URL(e.url()).searchParams.get('from') !== want) throw new Error(`${name}: asked ${e.url()}, not from=${want}`);
          endWin = JSON.parse(await e.text());
        }
        out({
          kind: 'run',
          name,
          i,
          first_frame_ms: firstFrame,
          seek_ms: seek,
          first_window_bytes: castBytes,
          seek_fetched: ends.length > 0,
          end_shows_text: endText,
          end_window_bytes: endWin ? endWin.cast.length : null,
          end_window_from: endWin ? endWin.from : null,
          seek_to: Number(want),
          duration: Number(await page.locator('#player').getAttribute('data-duration')),
        });
        process.stderr.write(`${name} #${i}: first frame ${firstFrame.toFixed(0)} ms, seek ${seek.toFixed(0)} ms\n`);
      }
    }
    if (problems.length) throw new Error(problems.join('\n'));
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`console-browser failed: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  },
);
