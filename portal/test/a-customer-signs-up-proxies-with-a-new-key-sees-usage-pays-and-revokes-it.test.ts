/**
 * The portal end to end in real Chromium against the real server (embedded database):
 * sign-up with inline errors, an operator's node registered and run with the command the
 * portal shows, a key made, its curl line copied and run through the gateway to a local
 * target, the bytes on the usage chart, credit bought through Stripe's stand-in with the
 * ledger moving, an expired session brought back to the page it was on, and the revoked
 * key's curl refused with auth_failed. Every page is screenshotted at 1280 and 375 px and
 * checked with axe-core; no page breaks its Content-Security-Policy.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type AgentProcess, spawnAgent } from '@ipcola/agent/testing';
import { type ServerProcess, serverEnv, startServer } from '@ipcola/server/testing';
import {
  paid,
  type StripeStandIn,
  startStripeStandIn,
  stripeEvent,
  stripeSignature,
} from '@ipcola/server/testing/stripe';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import {
  launchChromium,
  screenshots,
  seriousAccessibilityViolations,
  WIDTHS,
} from './support/browser.ts';
import { freePort, startWhoami } from './support/whoami.ts';

const run = promisify(execFile);
const PORTAL_DIR = fileURLToPath(new URL('../', import.meta.url));
const WEBHOOK_SECRET = 'whsec_portal_e2e';
const EMAIL = `portal-${Date.now()}@example.com`;
const PASSWORD = 'a long enough password';

let dataDir: string;
let server: ServerProcess;
let stripe: StripeStandIn;
let whoami: Awaited<ReturnType<typeof startWhoami>>;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let agent: AgentProcess | undefined;
let base: string;
const policyViolations: string[] = [];

before(async () => {
  // The test serves what the portal's source builds now.
  await run('npx', ['vite', 'build', '--logLevel', 'warn'], { cwd: PORTAL_DIR });
  dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-portal-'));
  whoami = await startWhoami();
  stripe = await startStripeStandIn();
  const apiPort = await freePort();
  base = `http://127.0.0.1:${apiPort}`;
  server = await startServer(
    serverEnv({
      DATA_DIR: dataDir,
      API_PORT: String(apiPort),
      USAGE_FLUSH_INTERVAL_MS: '300',
      STRIPE_SECRET_KEY: 'sk_test_portal',
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      STRIPE_API_URL: stripe.url,
      PORTAL_URL: `${base}/billing`,
      // The customer's webhook endpoint below is the local target, over plain http.
      WEBHOOK_ALLOW_TARGETS: '127.0.0.0/8',
    }),
    [],
    60_000,
  );
  browser = await launchChromium();
  context = await browser.newContext({ viewport: WIDTHS.desktop });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  // Stripe's hosted Checkout page, as far as the portal sees it: it pays and sends the
  // customer back to the success URL the server asked for.
  await context.route('https://checkout.stripe.com/**', async (route) => {
    const id = route.request().url().split('/').at(-1) ?? '';
    const session = stripe.sessions.get(id);
    assert.ok(session, `no Checkout Session ${id} at the stand-in`);
    await route.fulfill({ status: 303, headers: { location: session.success_url } });
  });
  // Stripe's Connect onboarding: done, it returns the operator to the return URL.
  await context.route('https://connect.stripe.com/**', (route) =>
    route.fulfill({ status: 303, headers: { location: `${base}/billing?payouts=linked` } }),
  );
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  // Each refusal of the page's Content-Security-Policy, with what was refused and where.
  await page.exposeFunction('reportPolicyViolation', (violation: string) => {
    policyViolations.push(violation);
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      const report = (globalThis as unknown as { reportPolicyViolation(text: string): void })
        .reportPolicyViolation;
      report(
        `${event.effectiveDirective} refused ${event.blockedURI} ${event.sample} at ${event.sourceFile}:${event.lineNumber}:${event.columnNumber} on ${location.pathname}`,
      );
    });
  });
});

after(async () => {
  await browser?.close();
  await agent?.stop();
  await server?.stop();
  await stripe?.close();
  whoami?.server.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Screenshots at both widths, no sideways scrolling, and axe-core's verdict. */
async function looked(name: string): Promise<void> {
  assert.deepEqual(await screenshots(page, name), [], `${name}: wider than the window`);
  assert.deepEqual(await seriousAccessibilityViolations(page), [], `${name}: accessibility`);
}

/**
 * Escape closes the open dialog; the next step waits until every dialog is gone (one that
 * opened another, such as a confirmation, fades out beside it).
 */
async function closeDialog(): Promise<void> {
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => document.querySelector('[role="dialog"]') === null);
}

/** curl's answer for a command line as the portal shows it, aimed at the local target. */
async function runCurl(line: string): Promise<{ status: number; error: string; body: string }> {
  const words = line.trim().split(/\s+/);
  assert.equal(words[0], 'curl');
  words[words.length - 1] = whoami.url;
  const { stdout } = await run('curl', [...words.slice(1), '-sS', '-i', '--max-time', '10']);
  const [head = '', body = ''] = stdout.split(/\r\n\r\n/, 2);
  return {
    status: Number(head.split(' ')[1]),
    error: /x-ipcola-error: *(\S+)/i.exec(head)?.[1] ?? '',
    body,
  };
}

test('a new visitor sees the log-in page and signs up, with errors inline', async () => {
  await page.goto(`${base}/keys`);
  await page.getByRole('heading', { name: 'Log in' }).waitFor();
  await looked('log-in');
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Email').fill(EMAIL);
  await page.getByLabel(/^Password/).fill('short');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('alert').getByText('at least 10 characters').waitFor();
  await looked('sign-up-refused');
  // The keyboard alone finishes the form.
  await page.getByLabel(/^Password/).fill(PASSWORD);
  await page.getByLabel(/^Password/).press('Enter');
  await page.getByRole('heading', { name: 'API keys' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/keys');
});

test('an operator registers a node, runs the agent command shown and sees it online', async () => {
  await page.getByRole('link', { name: 'Nodes & payouts' }).click();
  await page.getByRole('heading', { name: 'Nodes & payouts' }).waitFor();
  await page.getByRole('button', { name: 'Register node' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('home-office');
  await dialog.getByRole('button', { name: 'Register' }).click();
  const command = (await page.getByTestId('copy-Agent command').textContent()) ?? '';
  assert.match(command, /^npm run agent -- --hub 127\.0\.0\.1:\d+ --token \S+$/);
  await looked('node-registered');
  await closeDialog();
  // The command as shown, plus where this machine's exit is and what it may reach.
  const shown = command.split(' ').slice(4);
  agent = spawnAgent([
    ...shown,
    '--exit-ip',
    '127.0.0.12',
    '--country',
    'us',
    '--allow-target',
    '127.0.0.1/32',
  ]);
  const row = page.locator('tr', { hasText: 'home-office' });
  await row.getByText('Online').waitFor({ timeout: 20_000 });
  // The hub saw the agent connect from its exit IP: proven.
  await row.getByTestId('exit-127.0.0.12').getByText('verified').waitFor();
  await looked('nodes');
});

test('an operator links a Stripe account for payouts and comes back to the nodes page', async () => {
  await page.getByRole('button', { name: 'Link a Stripe account' }).click();
  await page.waitForURL(`${base}/nodes`);
  await page.getByText('Your payout account is linked.').waitFor();
  await page.getByText('Onboarding unfinished').waitFor();
  assert.equal(stripe.connectedAccounts.size, 1);
  await looked('payouts-linked');
});

let curlLine = '';

test('a customer makes a key, copies its curl line and reaches a target through the gateway', async () => {
  await page.getByRole('link', { name: 'API keys' }).click();
  await page.getByRole('button', { name: 'Create key' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('scraper');
  await dialog.getByLabel('Monthly cap (GB)').fill('5');
  await dialog.getByRole('button', { name: 'Create key' }).click();
  await page.getByText('Copy the secret now').waitFor();
  await page.getByRole('button', { name: 'Copy curl line' }).click();
  curlLine = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(curlLine, /^curl -x http:\/\/[a-z0-9]+:[A-Za-z0-9]+@127\.0\.0\.1:\d+ \S+$/);
  assert.equal(curlLine, await page.getByTestId('copy-curl line').textContent());
  await looked('key-created');
  await closeDialog();
  await page.locator('tr', { hasText: 'scraper' }).getByText('5.00 GB/month').waitFor();
  await looked('keys');

  const answer = await runCurl(curlLine);
  assert.equal(answer.status, 200, answer.body);
  assert.match(answer.body, /you reached this target from 127\.0\.0\.12/);
});

test('the proxy builder counts the online exit and makes proxy lines for the choice', async () => {
  await page.getByRole('link', { name: 'Proxy builder' }).click();
  await page.getByTestId('online-exits').getByText('1 exit online').waitFor();
  await page.getByLabel('Country', { exact: true }).first().click();
  await page.getByRole('option', { name: 'US' }).click();
  await page.getByRole('button', { name: /Generate 10 lines/ }).click();
  const lines = (await page.getByLabel('Proxy list').inputValue()).split('\n');
  assert.equal(lines.length, 10);
  assert.match(
    lines[0] ?? '',
    /^[a-z0-9]+-country-us-session-\w+-ttl-10m:SECRET@127\.0\.0\.1:\d+$/,
  );
  await looked('proxy-builder');
});

test('the usage page charts the bytes the curl moved and the node shows it carried them', async () => {
  await page.getByRole('link', { name: 'Usage' }).click();
  await page.getByRole('img', { name: 'Bytes per hour' }).waitFor({ timeout: 30_000 });
  const total = (await page.getByTestId('stat-Total').textContent()) ?? '';
  assert.match(total, /^[1-9][\d.]* (B|KB)$/);
  await looked('usage');

  // A tunnel held open through the key shows as a connection open now, and goes.
  const proxy = new URL(/-x (\S+)/.exec(curlLine)?.[1] ?? '');
  const target = new URL(whoami.url);
  const held = connect(Number(proxy.port), proxy.hostname);
  held.on('error', () => {});
  await once(held, 'connect');
  const basic = Buffer.from(`${proxy.username}:${proxy.password}`).toString('base64');
  held.write(
    `CONNECT ${target.host} HTTP/1.1\r\nHost: ${target.host}\r\nProxy-Authorization: Basic ${basic}\r\n\r\n`,
  );
  const openNow = page.getByTestId('stat-Connections open now');
  try {
    await openNow.filter({ hasText: /^1$/ }).waitFor({ timeout: 15_000 });
  } finally {
    held.destroy();
  }
  await openNow.filter({ hasText: /^0$/ }).waitFor({ timeout: 15_000 });
  // The operator's side of the same bytes: the node carried them.
  await page.getByRole('link', { name: 'Nodes & payouts' }).click();
  const carried = page.locator('tr', { hasText: 'home-office' }).getByRole('cell').nth(3);
  await carried.getByText(/^[1-9][\d.]* (B|KB)$/).waitFor();
  await looked('nodes-carrying');
});

test('buying credit goes through Stripe Checkout and the ledger shows the top-up', async () => {
  await page.getByRole('link', { name: 'Billing' }).click();
  const before = (await page.getByTestId('balance').textContent()) ?? '';
  await looked('billing');
  await page.getByRole('button', { name: /Growth/ }).click();
  await page.waitForURL(/\/billing$/);
  await page.getByText('Payment received').waitFor();
  // Stripe tells the server the session was paid.
  const session = [...stripe.sessions.values()].at(-1);
  assert.ok(session);
  const payload = JSON.stringify(stripeEvent('checkout.session.completed', paid(session)));
  const delivered = await fetch(`${base}/v1/billing/stripe-webhook`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'stripe-signature': stripeSignature(payload, WEBHOOK_SECRET),
    },
    body: payload,
  });
  assert.equal(delivered.status, 200);
  await page.reload();
  const ledger = page.getByTestId('ledger');
  await ledger.getByText('Top-up').waitFor();
  await ledger.getByText('$50.00').waitFor();
  const now = (await page.getByTestId('balance').textContent()) ?? '';
  assert.notEqual(now, before);
  await looked('billing-topped-up');
  // The card the payment saved now pays for auto top-up.
  await page.getByText('Charges your visa ending 4242').waitFor();
  await page.getByLabel('Top up automatically').check();
  await page.getByLabel('Add').fill('30.00');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Auto top-up saved').waitFor();
  await page.reload();
  await page.getByLabel('Add').waitFor();
  assert.equal(await page.getByLabel('Add').inputValue(), '30.00');
  assert.equal(await page.getByLabel('Top up automatically').isChecked(), true);
});

test('a customer webhook endpoint is added and its test delivery shows its attempt', async () => {
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel(/^URL/).fill(`${whoami.url}ipcola-events`);
  await dialog.getByRole('button', { name: 'Add endpoint' }).click();
  const secret = (await page.getByTestId('copy-Signing secret').textContent()) ?? '';
  assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
  await closeDialog();
  await page.getByRole('button', { name: `${whoami.url}ipcola-events` }).click();
  await page.getByRole('button', { name: 'Send test event' }).click();
  const delivery = page.locator('tr', { hasText: 'webhook.test' });
  await delivery.getByText('succeeded').waitFor({ timeout: 30_000 });
  await delivery.getByText(/^200 \(\d+ ms\)$/).waitFor();
  await looked('billing-webhooks');
});

test('an expired session brings back the log-in page and then the page the person was on', async () => {
  await context.clearCookies();
  await page.getByRole('link', { name: 'Usage' }).click();
  await page.getByRole('heading', { name: 'Log in' }).waitFor();
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Email').fill(EMAIL);
  await page.getByLabel(/^Password/).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('alert').getByText('already exists. Log in instead.').waitFor();
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByLabel(/^Password/).fill('not the password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').getByText('Wrong email or password.').waitFor();
  await page.getByLabel(/^Password/).fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Usage' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/usage');
});

/** curl's answer once the gateway has heard of a key change (within a second). */
async function curlUntil(line: string, status: number) {
  const deadline = Date.now() + 5_000;
  let answer = await runCurl(line);
  while (answer.status !== status && Date.now() < deadline) answer = await runCurl(line);
  return answer;
}

test('a key is renamed and given a concurrency limit in the same form', async () => {
  await page.getByRole('link', { name: 'API keys' }).click();
  await page.getByRole('button', { name: 'Manage scraper' }).click();
  await page.getByRole('menuitem', { name: 'Edit name and limits' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('crawler');
  await dialog.getByLabel('Concurrent connections').fill('8');
  await dialog.getByRole('button', { name: 'Save' }).click();
  await dialog.waitFor({ state: 'detached' });
  await page
    .locator('tr', { hasText: 'crawler' })
    .getByText('5.00 GB/month · 8 connections')
    .waitFor();
});

test("a rotated key's old curl line is refused and the new one shown works", async () => {
  await page.getByRole('button', { name: 'Manage crawler' }).click();
  await page.getByRole('menuitem', { name: 'Rotate secret' }).click();
  await page.getByRole('button', { name: 'Rotate secret' }).click();
  await page.getByRole('button', { name: 'Copy curl line' }).click();
  const rotated = await page.evaluate(() => navigator.clipboard.readText());
  assert.notEqual(rotated, curlLine);
  await closeDialog();
  const old = await curlUntil(curlLine, 407);
  assert.equal(old.status, 407);
  assert.equal(old.error, 'auth_failed');
  const fresh = await runCurl(rotated);
  assert.equal(fresh.status, 200, fresh.body);
  curlLine = rotated;
});

test('a revoked key is refused at the gateway with auth_failed', async () => {
  await page.getByRole('link', { name: 'API keys' }).click();
  await page.getByRole('button', { name: 'Manage crawler' }).click();
  await page.getByRole('menuitem', { name: 'Revoke' }).click();
  await looked('revoke-confirmation');
  await page.getByRole('button', { name: 'Revoke key' }).click();
  await page.locator('tr', { hasText: 'crawler' }).waitFor({ state: 'detached' });
  const answer = await curlUntil(curlLine, 407);
  assert.equal(answer.status, 407);
  assert.equal(answer.error, 'auth_failed');
});

test('no page broke its Content-Security-Policy', () => {
  assert.deepEqual(policyViolations, []);
});
