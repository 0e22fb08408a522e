import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type BrowserContext, chromium } from 'playwright-core';
import { ProxyAgent, request } from 'undici';
import { WebSocket, WebSocketServer } from 'ws';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

/**
 * Flags for Debian's Chromium in a container. Loopback is proxied because the proxy's
 * `bypass` below is `<-loopback>` (Chromium bypasses the proxy for loopback otherwise).
 */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A site on 127.0.0.1: HTML showing the client address it saw, and a WebSocket echo. */
interface Site {
  server: Server;
  wss: WebSocketServer;
  origin: string;
  port: number;
  /** Remote address of every WebSocket connection, in order. */
  wsClients: string[];
  close(): Promise<void>;
}

async function startSite(): Promise<Site> {
  const server = createServer((req, res) => {
    const client = req.socket.remoteAddress ?? '';
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        `<!doctype html><html><head><title>whoami</title></head>` +
          `<body><p id="client">${client}</p></body></html>`,
      );
      return;
    }
    if (req.url === '/whoami') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(client);
      return;
    }
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  const wsClients: string[] = [];
  wss.on('connection', (ws, req: IncomingMessage) => {
    const client = req.socket.remoteAddress ?? '';
    wsClients.push(client);
    ws.send(`hello ${client}`);
    ws.on('message', (data) => ws.send(`echo ${String(data)}`));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return {
    server,
    wss,
    origin: `http://127.0.0.1:${port}`,
    port,
    wsClients,
    async close() {
      for (const client of wss.clients) client.terminate();
      await new Promise((resolve) => wss.close(resolve));
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The part of the browser's WebSocket that page script uses (this project has no DOM types). */
type PageWebSocketClass = new (
  url: string,
) => {
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: (() => void) | null;
  send(data: string): void;
  close(): void;
};

/** Opens a CONNECT tunnel through the gateway and resolves with the raw socket. */
async function connectTunnel(
  net: ProxyNetwork,
  params: string,
  authority: string,
): Promise<{ socket: Socket; headers: IncomingMessage['headers'] }> {
  const auth = Buffer.from(`${net.key.id}${params}:${net.key.secret}`).toString('base64');
  const req = httpRequest({
    host: '127.0.0.1',
    port: net.ports.proxy,
    method: 'CONNECT',
    path: authority,
    headers: { host: authority, 'proxy-authorization': `Basic ${auth}` },
  });
  req.end();
  const [res, socket] = (await once(req, 'connect')) as [IncomingMessage, Socket];
  if (res.statusCode !== 200) {
    socket.destroy();
    throw new Error(`CONNECT answered ${res.statusCode} ${res.headers['x-ipcola-error'] ?? ''}`);
  }
  return { socket, headers: res.headers };
}

/** Waits for the next message on a `ws` client. */
async function nextMessage(ws: WebSocket): Promise<string> {
  const [data] = await once(ws, 'message');
  return String(data);
}

describe('browsers and WebSockets work through the gateway', () => {
  let net: ProxyNetwork;
  let site: Site;
  let userDataDir: string | undefined;
  let context: BrowserContext | undefined;

  before(async () => {
    net = await startProxyNetwork([
      { ip: '127.0.0.12', country: 'de' },
      { ip: '127.0.0.13', country: 'us' },
      { ip: '127.0.0.14', country: 'us' },
    ]);
    site = await startSite();
  });

  after(async () => {
    await context?.close();
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
    await site?.close();
    await net?.close();
  });

  /** One Chromium for the browser tests, proxied through the gateway as country-de. */
  async function browser(): Promise<BrowserContext> {
    if (context) return context;
    userDataDir = await mkdtemp(path.join(tmpdir(), 'ipcola-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60_000,
      proxy: {
        server: `http://127.0.0.1:${net.ports.proxy}`,
        // Chromium never proxies loopback unless told to with this rule.
        bypass: '<-loopback>',
        username: `${net.key.id}-country-de`,
        password: net.key.secret,
      },
    });
    return context;
  }

  test('Chromium answers the 407 challenge and loads a page through the de exit', async () => {
    const page = await (await browser()).newPage();
    try {
      // Chromium sends no proxy credentials until the gateway's 407 asks for them.
      const response = await page.goto(`${site.origin}/`);
      assert.ok(response, 'a response for the page');
      assert.equal(response.status(), 200);
      assert.equal(response.headers()['x-ipcola-exit-country'], 'de');
      assert.equal(await page.textContent('#client'), '127.0.0.12');
      // a fetch from page script goes the same way
      const fetched = await page.evaluate(async () => (await fetch('/whoami')).text());
      assert.equal(fetched, '127.0.0.12');
    } finally {
      await page.close();
    }
  });

  test('Chromium page script opens a WebSocket through the gateway and messages echo', async () => {
    const page = await (await browser()).newPage();
    try {
      // Playwright answers proxy challenges of page loads only, not of a WebSocket's CONNECT:
      // loading the page first lets Chromium send its cached Basic credentials with the CONNECT.
      await page.goto(`${site.origin}/`);
      const seenBefore = site.wsClients.length;
      const messages = await page.evaluate(async (url) => {
        // This runs in the page: the browser's own WebSocket, not the `ws` package.
        const BrowserWebSocket = (globalThis as unknown as { WebSocket: PageWebSocketClass })
          .WebSocket;
        const ws = new BrowserWebSocket(url);
        const received: string[] = [];
        return await new Promise<string[]>((resolve, reject) => {
          ws.onerror = () => reject(new Error('WebSocket error'));
          ws.onmessage = (event) => {
            received.push(String(event.data));
            if (received.length === 1) ws.send('ping from chromium');
            else {
              ws.close();
              resolve(received);
            }
          };
        });
      }, `ws://127.0.0.1:${site.port}/ws`);
      assert.deepEqual(messages, ['hello 127.0.0.12', 'echo ping from chromium']);
      assert.deepEqual(site.wsClients.slice(seenBefore), ['127.0.0.12']);
    } finally {
      await page.close();
    }
  });

  test('a ws client upgrades inside a CONNECT tunnel and messages echo both ways', async () => {
    const seenBefore = site.wsClients.length;
    const tunnel = await connectTunnel(net, '-country-de', `127.0.0.1:${site.port}`);
    assert.equal(tunnel.headers['x-ipcola-exit-country'], 'de');
    const ws = new WebSocket(`ws://127.0.0.1:${site.port}/ws`, {
      createConnection: () => tunnel.socket,
    });
    try {
      const hello = nextMessage(ws);
      await once(ws, 'open');
      assert.equal(await hello, 'hello 127.0.0.12');
      for (const text of ['one', 'two', 'x'.repeat(100_000)]) {
        const answer = nextMessage(ws);
        ws.send(text);
        assert.equal(await answer, `echo ${text}`);
      }
      assert.deepEqual(site.wsClients.slice(seenBefore), ['127.0.0.12']);
    } finally {
      const closed = once(ws, 'close');
      ws.close();
      await closed;
    }
  });

  test('undici ProxyAgent with a sticky session keeps one exit over new connections', async () => {
    const exits = new Set<string>();
    for (let i = 0; i < 5; i++) {
      // A new agent each time: a new connection to the gateway, so a new exit choice.
      const dispatcher = new ProxyAgent(net.proxyUrl('-country-us-session-s1'));
      try {
        const res = await request(`${net.target}/`, { dispatcher });
        assert.equal(res.statusCode, 200);
        exits.add(await res.body.text());
      } finally {
        await dispatcher.close();
      }
    }
    assert.equal(exits.size, 1, `one exit for the session, saw ${[...exits]}`);
    assert.match([...exits][0] ?? '', /^127\.0\.0\.1[34]$/);
    // Without a session the same new connections spread over both us exits.
    const spread = new Set<string>();
    for (let i = 0; i < 20 && spread.size < 2; i++) {
      const dispatcher = new ProxyAgent(net.proxyUrl('-country-us'));
      try {
        spread.add(await (await request(`${net.target}/`, { dispatcher })).body.text());
      } finally {
        await dispatcher.close();
      }
    }
    assert.deepEqual([...spread].sort(), ['127.0.0.13', '127.0.0.14']);
  });
});
