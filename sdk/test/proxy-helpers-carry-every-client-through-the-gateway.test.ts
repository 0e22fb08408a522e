/**
 * Each helper with the real client it is for, through a real gateway and real exit nodes:
 * the whoami targets answer with the address they were reached from, which is the exit IP
 * of the country asked for.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Configuration, ProxyConfiguration } from '@crawlee/core';
import { HttpCrawler } from '@crawlee/http';
import axios from 'axios';
import got from 'got';
import { gotScraping } from 'got-scraping';
import { chromium } from 'playwright-core';
import { request, fetch as undiciFetch } from 'undici';
import type { ProxyHelpers } from '../src/proxy/index.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const run = promisify(execFile);
const DE = '127.0.0.12';
const US = ['127.0.0.13', '127.0.0.14'];

describe('the proxy helpers carry every client through the gateway', () => {
  let network: ProxyNetwork;
  let ipc: ProxyHelpers;

  before(async () => {
    network = await startProxyNetwork();
    ipc = network.helpers();
  });
  after(async () => {
    await ipc?.close();
    await network?.close();
  });

  it('fetch goes out through an exit of the country asked for, http and https', async () => {
    const plain = await ipc.fetch(network.httpTarget, { country: 'de' });
    assert.equal(plain.status, 200);
    assert.equal(await plain.text(), DE);
    const tls = await ipc.fetch(network.httpsTarget, { country: 'us' });
    assert.ok(US.includes(await tls.text()));
  });

  it("the dispatcher serves undici's fetch, Node's global fetch and undici's request", async () => {
    const dispatcher = ipc.dispatcher({ country: 'de' });
    try {
      assert.equal(await (await undiciFetch(network.httpsTarget, { dispatcher })).text(), DE);
      // Node's own fetch takes an undici dispatcher too (for plain-http targets here: the
      // https target's private CA lives in the dispatcher, which the global fetch honours).
      const globalAnswer = await fetch(network.httpTarget, {
        dispatcher,
      } as unknown as RequestInit);
      assert.equal(await globalAnswer.text(), DE);
      const { statusCode, body } = await request(network.httpTarget, { dispatcher });
      assert.equal(statusCode, 200);
      assert.equal(await body.text(), DE);
    } finally {
      await dispatcher.close();
    }
  });

  it('axios goes through httpAgent and httpsAgent', async () => {
    const options = { country: 'de' } as const;
    const client = axios.create({
      httpAgent: await ipc.httpAgent(options),
      httpsAgent: await ipc.httpsAgent(options),
      // axios's own proxy support would read HTTP_PROXY; the agents are the proxy.
      proxy: false,
      responseType: 'text',
    });
    assert.equal((await client.get(network.httpTarget)).data, DE);
    assert.equal((await client.get(network.httpsTarget)).data, DE);
  });

  it('got goes through the same agents, and got-scraping through its proxyUrl', async () => {
    const options = { country: 'us' } as const;
    const agent = { http: await ipc.httpAgent(options), https: await ipc.httpsAgent(options) };
    assert.ok(US.includes(await got(network.httpTarget, { agent }).text()));
    assert.ok(US.includes(await got(network.httpsTarget, { agent }).text()));
    const scraped = await gotScraping({
      url: network.httpsTarget,
      ...ipc.gotScrapingOptions({ country: 'de' }),
      https: { certificateAuthority: network.ca },
    });
    assert.equal(scraped.body, DE);
  });

  it('node:http goes through httpAgent', async () => {
    const agent = await ipc.httpAgent({ country: 'de' });
    const body = await new Promise<string>((resolve, reject) => {
      httpGet(network.httpTarget, { agent }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => resolve(text)).on('error', reject);
      }).on('error', reject);
    });
    assert.equal(body, DE);
    agent.destroy();
  });

  it('Playwright with Debian Chromium goes through playwrightProxy', async () => {
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      proxy: ipc.playwrightProxy({ country: 'de' }),
    });
    try {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      const page = await context.newPage();
      await page.goto(network.httpTarget);
      assert.equal(await page.textContent('body'), DE);
      await page.goto(network.httpsTarget);
      assert.equal(await page.textContent('body'), DE);
    } finally {
      await browser.close();
    }
  });

  it("Crawlee's HttpCrawler keeps one exit per Crawlee session", async () => {
    const seen: string[] = [];
    const crawler = new HttpCrawler(
      {
        proxyConfiguration: new ProxyConfiguration(
          ipc.crawleeProxyOptions({ country: 'us', ttl: '10m' }),
        ),
        // One session: every page must come from the same exit.
        sessionPoolOptions: { maxPoolSize: 1 },
        maxRequestRetries: 0,
        additionalMimeTypes: ['text/plain'],
        requestHandler: async ({ body }) => {
          seen.push(String(body));
        },
      },
      new Configuration({ persistStorage: false }),
    );
    await crawler.run([1, 2, 3, 4].map((n) => `${network.httpTarget}?page=${n}`));
    assert.equal(seen.length, 4);
    assert.ok(US.includes(seen[0] as string), `a us exit, not ${seen[0]}`);
    assert.deepEqual(new Set(seen), new Set([seen[0]]));
  });

  it('curl takes proxyUrl and socksUrl as they are', async () => {
    const curl = async (...args: string[]) =>
      (await run('curl', ['--silent', '--show-error', '--max-time', '10', ...args])).stdout;
    assert.equal(await curl('-x', ipc.proxyUrl({ country: 'de' }), network.httpTarget), DE);
    const socks = ipc.socksUrl({ country: 'de', session: 'job42', ttl: 600 });
    assert.equal(new URL(socks).username, `${network.key.id}-country-de-session-job42-ttl-10m`);
    assert.equal(await curl('-x', socks, network.httpTarget), DE);
  });
});
