// run.mjs: runs one browser scenario for the end-to-end tests against the
// system's Chromium (playwright-core, never a downloaded browser).
//
//   BASTION_URL=https://127.0.0.1:PORT BASTION_CERT_SHA256=HEX node run.mjs SCENARIO.mjs
//
// Before the browser starts, the served certificate's SHA-256 must equal
// BASTION_CERT_SHA256 (hex, colons and case ignored); Chromium then accepts
// only that certificate's key (--ignore-certificate-errors-spki-list), not
// any self-signed one. Every request the pages make is recorded; one to
// another origin is blocked and fails the run, as do CSP violations and
// uncaught page errors. The scenario module exports
// `default async function (ctx)`, ctx = {browser, context, page, baseUrl,
// env, requests, screenshot(name), log(obj)}. stdout carries one JSON line
// per ctx.log call and nothing else; diagnostics go to stderr. Exit 0 or 1.
// BASTION_SCREENSHOTS=DIR makes screenshot(name) write DIR/name.png.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.BASTION_CHROMIUM || '/usr/bin/chromium';

// The DER certificate served at an https URL, read without trusting it:
// the caller compares it with the one it expects.
export function servedCertificate(url) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const host = u.hostname.replace(/^\[|\]$/g, '');
    const sock = tls.connect({
      host,
      port: Number(u.port) || 443,
      servername: /^[\d.]+$|:/.test(host) ? undefined : host,
      rejectUnauthorized: false,
    });
    sock.setTimeout(5000, () => sock.destroy(new Error(`TLS to ${u.host} timed out`)));
    sock.once('secureConnect', () => {
      const raw = sock.getPeerCertificate().raw;
      sock.end();
      raw ? resolve(raw) : reject(new Error(`${u.host} sent no certificate`));
    });
    sock.once('error', reject);
  });
}

// Lowercase hex SHA-256 of the certificate served at `url`.
export async function certFingerprint(url) {
  return crypto.createHash('sha256').update(await servedCertificate(url)).digest('hex');
}

const normalHex = (s) => String(s || '').replace(/:/g, '').toLowerCase();

async function main() {
  const scenario = process.argv[2];
  if (!scenario) throw new Error('usage: node run.mjs SCENARIO.mjs (BASTION_URL, BASTION_CERT_SHA256 in the environment)');
  const baseUrl = (process.env.BASTION_URL || '').replace(/\/+$/, '');
  const origin = new URL(baseUrl).origin;
  if (!baseUrl.startsWith('https://')) throw new Error(`BASTION_URL must be https: ${baseUrl || '(unset)'}`);
  const want = normalHex(process.env.BASTION_CERT_SHA256);
  if (!/^[0-9a-f]{64}$/.test(want)) throw new Error('BASTION_CERT_SHA256 must be 64 hex digits');

  const der = await servedCertificate(baseUrl);
  const got = crypto.createHash('sha256').update(der).digest('hex');
  if (got !== want) throw new Error(`${origin} serves certificate ${got}, expected ${want}`);
  const spki = new crypto.X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  const spkiHash = crypto.createHash('sha256').update(spki).digest('base64');

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'bastion-chromium-'));
  const problems = [];
  const requests = [];
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
    // Everything goes through here: another origin is refused before it
    // leaves, and remembered to fail the run.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      const u = new URL(url);
      const local = u.protocol === 'data:' || u.protocol === 'blob:' || u.origin === origin;
      requests.push({ method: route.request().method(), url, allowed: local });
      if (local) return route.continue();
      problems.push(`request to another origin: ${url}`);
      return route.abort('blockedbyclient');
    });
    // The page reports CSP violations through this binding (added before
    // any of its own scripts run; CDP-injected, so the CSP does not apply).
    await context.exposeBinding('__bastionCspViolation', (_src, v) => {
      problems.push(`CSP violation: ${v.directive} blocked ${v.blocked} (${v.source}:${v.line})`);
    });
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__bastionCspViolation({
          directive: e.violatedDirective,
          blocked: e.blockedURI,
          source: e.sourceFile,
          line: e.lineNumber,
        });
      });
    });
    const page = context.pages()[0] || (await context.newPage());
    // Generous: on a loaded 2-CPU machine Chromium and the player's wasm take seconds to start.
    page.setDefaultTimeout(30000);
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') process.stderr.write(`console error: ${m.text()}\n`);
    });

    const shots = process.env.BASTION_SCREENSHOTS;
    const ctx = {
      browser: context.browser(),
      context,
      page,
      baseUrl,
      env: process.env,
      requests,
      async screenshot(name) {
        if (!shots) return;
        if (!/^[\w.-]+$/.test(name)) throw new Error(`bad screenshot name ${name}`);
        fs.mkdirSync(shots, { recursive: true });
        await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
      },
      log(obj) {
        process.stdout.write(JSON.stringify(obj) + '\n');
      },
    };
    const mod = await import(pathToFileURL(path.resolve(scenario)).href);
    if (typeof mod.default !== 'function') throw new Error(`${scenario} has no default export function`);
    try {
      await mod.default(ctx);
    } catch (e) {
      // What the page did wrong is often why the scenario failed: say both.
      problems.unshift(`scenario: ${e && e.stack ? e.stack : e}`);
    }
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
  if (problems.length) throw new Error(problems.join('\n'));
}

// Run only as the driver, so a scenario may import the helpers above.
if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
  main().then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(`scenario failed: ${e && e.message ? e.message : e}\n`);
      process.exit(1);
    },
  );
}
