// console.mjs: an auditor's morning in the browser console, against a real
// `bastion demo` whose sessions the Rust test made through OpenSSH
// (tests/console_web.rs). Every step checks what a user sees; the driver
// (run.mjs) fails the run on any request to another origin, CSP violation
// or page error.
//
// env: AUDITOR, AUDITOR_PASSWORD, CODE_NOW, CODE_NEXT (the auditor's TOTP
// codes for this step and the next), USER, USER_PASSWORD, USER_CODE (a
// non-auditor), MARKER, MARK_SESSION, XSS_SESSION, SCP_SESSION,
// HOSTILE_FILE, HOSTILE_COMMAND, GRANT (the auditor's own grant).

const must = (cond, what) => {
  if (!cond) throw new Error(what);
};

async function login(page, base, user, password, code) {
  await page.goto(`${base}/login`);
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await page.fill('input[name=code]', code);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/login') && r.request().method() === 'POST'),
    page.click('button[type=submit]'),
  ]);
  await page.waitForLoadState('domcontentloaded');
  return response;
}

// A form POST from the page, as its own script would send it.
async function post(page, url, form) {
  return page.evaluate(
    async ({ url, form }) => {
      const r = await fetch(url, { method: 'POST', body: new URLSearchParams(form), redirect: 'manual' });
      return { status: r.status, text: await r.text() };
    },
    { url, form },
  );
}

// Plays the page's player until its terminal shows `text`.
async function playUntil(page, text) {
  await page.waitForSelector('#player-controls #play');
  await page.click('#play');
  await page.waitForFunction((t) => document.getElementById('player').textContent.includes(t), text, {
    timeout: 30000,
  });
}

async function refusalText(page) {
  return (await page.locator('main').innerText()).replace(/\s+/g, ' ').trim();
}

export default async function (ctx) {
  const { page, baseUrl: base, env } = ctx;

  // Nothing without a login: pages send the browser to the form.
  const first = await page.goto(`${base}/sessions`);
  must(new URL(page.url()).pathname === '/login', `not sent to /login: ${page.url()}`);
  const h = first.headers();
  const csp = h['content-security-policy'] || '';
  must(csp.includes("default-src 'self'") && csp.includes("frame-ancestors 'none'") && !csp.includes('unsafe-inline'), `CSP: ${csp}`);
  must(h['x-content-type-options'] === 'nosniff', 'nosniff');
  must(h['referrer-policy'] === 'no-referrer', 'referrer policy');
  must((h['strict-transport-security'] || '').includes('max-age='), 'HSTS');
  await ctx.screenshot('login');

  // A wrong password and a replayed code get the same refusal.
  const wrong = await login(page, base, env.AUDITOR, 'not-the-password', env.CODE_NOW);
  must(wrong.status() === 401, `wrong password: ${wrong.status()}`);
  const wrongText = await refusalText(page);
  const ok = await login(page, base, env.AUDITOR, env.AUDITOR_PASSWORD, env.CODE_NOW);
  must(new URL(page.url()).pathname === '/sessions', `login failed: ${page.url()} ${await refusalText(page)}`);
  // headers() leaves out cookies; allHeaders() has them.
  const cookie = (await ok.allHeaders())['set-cookie'] || '';
  for (const part of ['__Host-bastion=', 'Secure', 'HttpOnly', 'SameSite=Strict', 'Path=/']) {
    must(cookie.includes(part), `cookie lacks ${part}: ${cookie}`);
  }
  must(!/Domain=/i.test(cookie), `cookie has a Domain: ${cookie}`);
  const stolen = (await page.context().cookies()).find((c) => c.name === '__Host-bastion');
  await page.click('form.logout button');
  must(new URL(page.url()).pathname === '/login', 'logout');
  const replayed = await login(page, base, env.AUDITOR, env.AUDITOR_PASSWORD, env.CODE_NOW);
  must(replayed.status() === 401, `replayed code: ${replayed.status()}`);
  must((await refusalText(page)) === wrongText, `refusals differ:\n${wrongText}\n${await refusalText(page)}`);
  ctx.log({ step: 'refusals', text: wrongText });

  // A cookie from a session that ended, or one never issued, opens nothing.
  for (const value of [stolen.value, 'forged-token-value']) {
    await page.context().addCookies([{ ...stolen, value }]);
    await page.goto(`${base}/s/${env.MARK_SESSION}`);
    must(new URL(page.url()).pathname === '/login', `cookie ${value.slice(0, 6)}… let in: ${page.url()}`);
  }
  await page.context().clearCookies();

  await login(page, base, env.AUDITOR, env.AUDITOR_PASSWORD, env.CODE_NEXT);
  must(new URL(page.url()).pathname === '/sessions', `second login failed: ${await refusalText(page)}`);
  const csrf = await page.locator('form.logout input[name=csrf]').getAttribute('value');

  // Sessions page: filter to the user, the marker's session is listed.
  await page.fill('form.filters input[name=user]', env.USER);
  await page.click('form.filters button');
  const users = await page.locator('table.sessions tbody tr td:nth-child(2)').allInnerTexts();
  must(users.length >= 3 && users.every((u) => u === env.USER), `filtered users: ${users}`);
  const row = page.locator(`tr[data-session="${env.MARK_SESSION}"]`);
  must((await row.count()) === 1, 'marker session not listed');
  must(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/.test(await row.locator('td').first().innerText()), 'absolute UTC time');
  await ctx.screenshot('sessions');

  // The session page: the player shows what the session printed.
  await row.locator('a').first().click();
  await playUntil(page, env.MARKER);
  must((await page.locator('section.verification .badge-ok').count()) === 1, 'verification not OK');
  await ctx.screenshot('session');
  ctx.log({ step: 'player', marker: env.MARKER });

  // The scp upload by name, and hostile strings as text, never markup.
  await page.goto(`${base}/s/${env.SCP_SESSION}`);
  const timeline = await page.locator('table.timeline').innerText();
  must(timeline.includes(env.HOSTILE_FILE) && timeline.includes('(upload)'), `upload not in the timeline:\n${timeline}`);
  await page.goto(`${base}/s/${env.XSS_SESSION}`);
  const xssTimeline = await page.locator('table.timeline').innerText();
  must(xssTimeline.includes(env.HOSTILE_COMMAND), `command line not shown as text:\n${xssTimeline}`);
  for (const s of [env.SCP_SESSION, env.XSS_SESSION]) {
    await page.goto(`${base}/s/${s}`);
    must((await page.locator('img').count()) === 0, `an <img> was injected on ${s}`);
    must((await page.evaluate(() => window.__xss)) === undefined, `a payload ran on ${s}`);
  }

  // Search across recordings links to the moment.
  await page.goto(`${base}/search?q=${encodeURIComponent(env.MARKER)}`);
  const hit = page.locator(`ol.hits a[href^="/s/${env.MARK_SESSION}?"]`);
  must((await hit.count()) >= 1, `no search hit: ${await page.locator('main').innerText()}`);
  await ctx.screenshot('search');
  await hit.first().click();
  // A seek shows the screen at that moment before anything plays.
  await page.waitForFunction((t) => document.getElementById('player').textContent.includes(t), env.MARKER);

  // State changes need the login's token: none, a wrong one, refused.
  // (From the page itself: the browser adds the cookie and its own
  // Sec-Fetch-Site; a cross-origin POST is tests/console_web.rs's, by curl.)
  for (const form of [{}, { csrf: 'wrong' }]) {
    const r = await post(page, `${base}/logout`, form);
    must(r.status === 403, `logout with ${JSON.stringify(form)}: ${r.status}`);
  }

  // A reviewer never reviews their own grant: no form, and a forged POST is refused.
  await page.goto(`${base}/review`);
  const own = page.locator(`section[data-grant="${env.GRANT}"]`);
  must((await own.count()) === 1, `own grant not listed: ${await page.locator('main').innerText()}`);
  must((await own.locator('form').count()) === 0, 'a review form for the own grant');
  must((await own.innerText()).includes('your own grant'), 'own grant not said');
  await ctx.screenshot('review');
  const self = await post(page, `${base}/review/${env.GRANT}`, { csrf, note: 'looks fine' });
  must(self.status === 409 && self.text.includes('may not review'), `self review: ${self.status} ${self.text}`);

  // Someone outside the auditor groups gets 403 and learns nothing.
  await page.context().clearCookies();
  await login(page, base, env.USER, env.USER_PASSWORD, env.USER_CODE);
  const outsider = await page.goto(`${base}/sessions`);
  must(outsider.status() === 403, `non-auditor got ${outsider.status()}`);
  const seen = await page.content();
  must(!seen.includes(env.MARK_SESSION) && !seen.includes(env.MARKER), 'the outsider saw a session');
  const direct = await page.goto(`${base}/s/${env.MARK_SESSION}`);
  must(direct.status() === 403, `non-auditor session page: ${direct.status()}`);
  ctx.log({ step: 'done' });
}
