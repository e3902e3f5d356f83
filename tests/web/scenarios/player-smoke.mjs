// player-smoke.mjs: the console's assets in a real browser under the
// console's CSP (tests/browser_smoke.rs serves the page): the asciinema
// player renders a cast given through console.js's #player contract,
// recorded input is listed as text only, a #t= hash seeks, and
// <form data-confirm> asks first.

const CAST_TEXT = 'hello from the cast';

export default async function (ctx) {
  const { page, baseUrl } = ctx;
  const dialogs = [];
  let answer = false;
  page.on('dialog', async (d) => {
    dialogs.push(d.message());
    await (answer ? d.accept() : d.dismiss());
  });

  await page.goto(baseUrl + '/index.html');
  const seekMax = await page.locator('#seek').getAttribute('max');
  ctx.log({ check: 'seek-bar', max: seekMax });
  if (seekMax !== '3') throw new Error(`#seek max is ${seekMax}, want 3 (data-duration)`);

  await page.click('#play');
  // The second line is recorded as markup: it must arrive as text.
  await page.waitForFunction(
    (want) => want.every((w) => document.getElementById('player').textContent.includes(w)),
    [CAST_TEXT, '<b>not markup</b>'],
  );
  ctx.log({ check: 'player-rendered', text: CAST_TEXT });
  if ((await page.locator('#player b').count()) > 0) throw new Error('recorded markup became elements');

  const keys = await page.locator('#keystrokes li .keys').allTextContents();
  ctx.log({ check: 'keystrokes', keys });
  if (keys.length !== 2 || keys[0] !== 'ls⏎' || keys[1] !== '<img src=x onerror=alert(1)>') {
    throw new Error(`keystrokes: ${JSON.stringify(keys)}`);
  }
  if ((await page.locator('#keystrokes img').count()) > 0) throw new Error('recorded input became an element');

  const castFetches = () => ctx.requests.filter((r) => r.url.includes('/cast.json')).length;
  const before = castFetches();
  await page.evaluate(() => {
    window.location.hash = '#t=1.5';
  });
  await page.waitForFunction(() => document.getElementById('time').textContent === '+00:00:01');
  ctx.log({ check: 'hash-seek', time: await page.locator('#time').textContent(), refetched: castFetches() > before });
  if (castFetches() !== before) throw new Error('a seek inside the loaded window fetched it again');
  await ctx.screenshot('player');

  await page.click('#review button');
  await page.waitForTimeout(200);
  const sentEarly = ctx.requests.some((r) => r.url.includes('/submitted'));
  answer = true;
  await Promise.all([page.waitForRequest('**/submitted*'), page.click('#review button')]);
  ctx.log({ check: 'confirm', dialogs, sentWhenDismissed: sentEarly });
  if (sentEarly || dialogs.length !== 2 || dialogs[0] !== 'Mark reviewed?') {
    throw new Error(`data-confirm: dialogs ${JSON.stringify(dialogs)}, sent when dismissed: ${sentEarly}`);
  }
}
