/**
 * /docs in a real browser: Chromium loads the page from the real server, swagger-ui
 * renders /openapi.yaml under the page's Content-Security-Policy without a violation,
 * and every operation of the document shows.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { parse as parseYaml } from 'yaml';
import { type ServerProcess, serverEnv, startServer } from './support/server-process.ts';

describe('API docs render every operation in Chromium', () => {
  let dataDir: string;
  let server: ServerProcess;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-docs-'));
    server = await startServer(serverEnv({ DATA_DIR: dataDir }));
  });
  after(async () => {
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('every path and method of the document is on the page', async () => {
    const document = parseYaml(
      await readFile(new URL('../../openapi/openapi.yaml', import.meta.url), 'utf8'),
    ) as { paths: Record<string, Record<string, unknown>> };
    const expected = Object.entries(document.paths).flatMap(([pathname, item]) =>
      Object.keys(item)
        .filter((method) => ['get', 'post', 'put', 'patch', 'delete'].includes(method))
        .map((method) => `${method.toUpperCase()} ${pathname}`),
    );

    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
      timeout: 60_000,
    });
    try {
      const page = await browser.newPage();
      const violations: string[] = [];
      page.on('console', (message) => {
        if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
      });
      const response = await page.goto(`http://127.0.0.1:${server.ports.api}/docs`);
      assert.equal(response?.status(), 200);
      assert.match(response?.headers()['content-security-policy'] ?? '', /default-src 'self'/);
      await page.waitForSelector('.opblock-summary', { timeout: 30_000 });
      const shown = await page.$$eval('.opblock-summary', (blocks) =>
        blocks.map((block) => {
          const method = block.querySelector('.opblock-summary-method')?.textContent ?? '';
          const route =
            block.querySelector('.opblock-summary-path')?.getAttribute('data-path') ?? '';
          return `${method.trim()} ${route.trim()}`;
        }),
      );
      assert.deepEqual([...shown].sort(), [...expected].sort());
      assert.deepEqual(violations, [], 'no Content-Security-Policy violation');
    } finally {
      await browser.close();
    }
  });
});
