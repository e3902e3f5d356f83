// player-windows.mjs: console.js across cast windows. The scenario answers
// the cast URL itself (page.route), as the bastion would: window A covers
// [0, 3) and names 3 as next, window B covers [3, 6) and is the last. When A
// ends the player goes on with B; the seek bar and time label follow the
// whole session; a seek outside the loaded window fetches the one holding it.

const cast = (lines) =>
  [JSON.stringify({ version: 2, width: 40, height: 5 }), ...lines.map((l) => JSON.stringify(l))].join('\n') + '\n';
const WINDOWS = [
  { cast: cast([[0.1, 'o', 'first window\r\n'], [2.9, 'o', '.\r\n']]), from: 0, until: 3, next: 3, input: [] },
  { cast: cast([[0.1, 'o', 'second window\r\n'], [2.9, 'o', '.\r\n']]), from: 3, until: 6, next: null, input: [] },
];

export default async function (ctx) {
  const { page, baseUrl } = ctx;
  const asked = [];
  await page.route('**/win.json?*', (route) => {
    const from = Number(new URL(route.request().url()).searchParams.get('from'));
    asked.push(from);
    const w = from < 3 ? WINDOWS[0] : WINDOWS[1];
    return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(w) });
  });
  const screen = (want) =>
    page.waitForFunction((w) => document.getElementById('player').textContent.includes(w), want);
  const time = () => page.locator('#time').textContent();

  await page.goto(baseUrl + '/windows.html');
  await page.click('#player-controls [data-speed="4"]');
  await page.click('#play');
  await screen('first window');
  await screen('second window');
  await page.waitForFunction(() => Number(document.getElementById('seek').value) >= 3);
  ctx.log({ check: 'next-window', asked: [...asked], time: await time() });
  if (asked[asked.length - 1] !== 3) throw new Error(`windows asked: ${asked}`);
  const pressed = await page.locator('#player-controls [aria-pressed="true"]').textContent();
  if (pressed !== '4×') throw new Error(`speed not kept across windows: ${pressed}`);

  // Back into window A through the seek bar: a fetch, and its text.
  await page.locator('#seek').fill('1.5'); // fires input, then change
  await screen('first window');
  ctx.log({ check: 'seek-back', asked: [...asked], time: await time() });
  if (asked.length !== 3 || asked[2] !== 1.5) throw new Error(`windows asked: ${asked}`);
}
