// live.mjs: a second pair of eyes in the browser, against a real `bastion
// demo` whose sessions the Rust test runs through OpenSSH
// (tests/live_web.rs): running sessions marked live, three watchers of a
// PTY session that see its current screen first and then a typed marker
// within a second and once, a held break-glass session let in by opening
// its page, and terminated from it.
//
// env: AUDITOR, AUDITOR_PASSWORD, CODE (the auditor's TOTP code), WORKER
// (a running session showing BEFORE on screen), HELD (a break-glass
// session held for a watcher), BEFORE, MARKER, READY_FILE (written once
// the watchers are on: the test then types MARKER + Enter and writes the
// time it did, in ms since the epoch, to TYPED_FILE), TYPED_FILE, REASON.

import fs from 'node:fs';

const must = (cond, what) => {
  if (!cond) throw new Error(what);
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The text a live page's terminal shows.
const screenText = (page) => page.evaluate(() => document.getElementById('live').textContent);

export default async function (ctx) {
  const { page, context, baseUrl: base, env } = ctx;

  await page.goto(`${base}/login`);
  await page.fill('input[name=user]', env.AUDITOR);
  await page.fill('input[name=password]', env.AUDITOR_PASSWORD);
  await page.fill('input[name=code]', env.CODE);
  await Promise.all([page.waitForURL(/\/sessions/), page.click('button[type=submit]')]);

  // Running sessions are listed live; the held one says it waits.
  await page.goto(`${base}/sessions`);
  for (const id of [env.WORKER, env.HELD]) {
    const row = page.locator(`tr[data-session="${id}"][data-live="1"]`);
    must((await row.count()) === 1, `session ${id} not listed live`);
  }
  const held = await page.locator(`tr[data-session="${env.HELD}"]`).innerText();
  must(held.includes('held: needs a watcher'), `held session not marked: ${held}`);
  ctx.log({ step: 'listed' });
  await ctx.screenshot('live-sessions');

  // Three watchers; each draws the current screen first.
  const pages = [page, await context.newPage(), await context.newPage()];
  for (const p of pages) {
    p.setDefaultTimeout(30000);
    await p.goto(`${base}/s/${env.WORKER}/live`);
    await p.waitForFunction((t) => document.getElementById('live').textContent.includes(t), env.BEFORE);
  }
  ctx.log({ step: 'current-screen' });

  // The marker typed now reaches every watcher within a second, once.
  fs.writeFileSync(env.READY_FILE, 'ready');
  const seen = await Promise.all(
    pages.map(async (p) => {
      await p.waitForFunction((t) => document.getElementById('live').textContent.includes(t), `got-${env.MARKER}`, {
        timeout: 20000,
        polling: 10,
      });
      return Date.now();
    }),
  );
  let typed = 0;
  for (let i = 0; i < 200 && !typed; i++) {
    try {
      typed = Number(fs.readFileSync(env.TYPED_FILE, 'utf8'));
    } catch {
      await sleep(10);
    }
  }
  must(typed > 0, 'the test never said when it typed');
  const latencies = seen.map((t) => t - typed);
  ctx.log({ step: 'marker', latencies });
  for (const l of latencies) must(l < 1000, `marker took ${l} ms to show`);
  for (const p of pages) {
    const text = await screenText(p);
    const n = text.split(`got-${env.MARKER}`).length - 1;
    must(n === 1, `marker shown ${n} times: ${text}`);
  }
  await ctx.screenshot('live-watch');
  for (const p of pages.slice(1)) await p.close();

  // Opening the held session's page is watching it: the session opens.
  await page.goto(`${base}/s/${env.HELD}/live`);
  await page.waitForFunction(() => document.getElementById('live').textContent.includes('CP-OPEN'));
  const watchers = await page.locator('#watchers').innerText();
  ctx.log({ step: 'held-opened', watchers });
  await ctx.screenshot('live-breakglass');

  // Terminate it from the page, with a reason.
  page.on('dialog', (d) => d.accept());
  await page.fill('form.terminate input[name=reason]', env.REASON);
  await Promise.all([page.waitForURL(new RegExp(`/s/${env.HELD}$`)), page.click('form.terminate button')]);
  ctx.log({ step: 'terminated' });
  ctx.log({ step: 'done' });
}
