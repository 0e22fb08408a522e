/**
 * Plain-HTTP forwarding (absolute-URI requests) through the real server and agent:
 * request bodies of every framing arrive whole, hop-by-hop headers of either side never
 * cross, end-to-end headers do, and a target that hangs up without answering is refused
 * with a code, all with curl as the customer.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';

const run = promisify(execFile);

interface Echo {
  method: string;
  headers: Record<string, string | string[]>;
  bodyLength: number;
  sha256: string;
}

/** A target on 127.0.0.1 (the agents' allowed range) that shows what reached it. */
async function startTarget(): Promise<{ server: Server; origin: string }> {
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/hang-up') {
      req.socket.destroy();
      return;
    }
    if (req.url === '/hop-headers') {
      res.setHeader('Connection', 'keep-alive, X-Hop-Secret');
      res.setHeader('Keep-Alive', 'timeout=5');
      res.setHeader('X-Hop-Secret', 'for the exit only');
      res.setHeader('X-End-To-End', 'kept');
      res.setHeader('Set-Cookie', ['a=1; Path=/', 'b=2; Path=/']);
      // No Content-Length: a chunked answer the gateway must pass on decoded and re-framed.
      res.write('first part, ');
      res.end('second part');
      return;
    }
    const hash = createHash('sha256');
    let bodyLength = 0;
    for await (const chunk of req) {
      hash.update(chunk as Buffer);
      bodyLength += (chunk as Buffer).length;
    }
    const echo: Echo = {
      method: req.method ?? '',
      headers: req.headers as Echo['headers'],
      bodyLength,
      sha256: hash.digest('hex'),
    };
    const text = JSON.stringify(echo);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    });
    res.end(req.method === 'HEAD' ? undefined : text);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

interface CurlAnswer {
  status: number;
  headers: Map<string, string[]>;
  body: string;
}

async function curl(args: string[]): Promise<CurlAnswer> {
  const { stdout } = await run('curl', ['-sS', '-i', '--max-time', '20', ...args], {
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
  // A 100 Continue comes first when curl asked for it; the final answer is the last.
  const answers = stdout.split(/\r\n\r\n(?=HTTP\/)/);
  const last = answers.at(-1) ?? '';
  const split = last.indexOf('\r\n\r\n');
  const head = split === -1 ? last : last.slice(0, split);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = new Map<string, string[]>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  return {
    status: Number(statusLine.split(' ')[1]),
    headers,
    body: split === -1 ? '' : last.slice(split + 4),
  };
}

describe('forwarded requests keep their bodies and drop hop-by-hop headers', () => {
  let net: ProxyNetwork;
  let target: { server: Server; origin: string };
  let upload: { file: string; sha256: string; size: number };

  before(async () => {
    target = await startTarget();
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }]);
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    const file = path.join(tmpdir(), `ipcola-upload-${process.pid}.bin`);
    await writeFile(file, bytes);
    upload = { file, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
  });
  after(async () => {
    await net?.close();
    target?.server.close();
  });

  const proxy = () => ['-x', net.proxyUrl('-country-de')];

  test('a 3 MB POST with Content-Length and Expect: 100-continue arrives whole', async () => {
    const answer = await curl([
      ...proxy(),
      '-H',
      'Expect: 100-continue',
      '--data-binary',
      `@${upload.file}`,
      `${target.origin}/echo`,
    ]);
    assert.equal(answer.status, 200, answer.body);
    const echo = JSON.parse(answer.body) as Echo;
    assert.equal(echo.method, 'POST');
    assert.equal(echo.bodyLength, upload.size);
    assert.equal(echo.sha256, upload.sha256);
    assert.equal(echo.headers['content-length'], String(upload.size));
    assert.equal(echo.headers.expect, undefined, 'Expect is answered by the gateway');
  });

  test('a chunked upload arrives whole', async () => {
    const answer = await curl([
      ...proxy(),
      '-H',
      'Transfer-Encoding: chunked',
      '--data-binary',
      `@${upload.file}`,
      `${target.origin}/echo`,
    ]);
    assert.equal(answer.status, 200, answer.body);
    const echo = JSON.parse(answer.body) as Echo;
    assert.equal(echo.bodyLength, upload.size);
    assert.equal(echo.sha256, upload.sha256);
  });

  test('hop-by-hop request headers stay at the gateway, end-to-end ones reach the target', async () => {
    const answer = await curl([
      ...proxy(),
      '-H',
      'Proxy-Connection: keep-alive',
      '-H',
      'Connection: keep-alive, X-Only-To-The-Proxy',
      '-H',
      'X-Only-To-The-Proxy: secret',
      '-H',
      'TE: trailers',
      '-H',
      'X-Customer: kept',
      `${target.origin}/echo`,
    ]);
    assert.equal(answer.status, 200, answer.body);
    const { headers } = JSON.parse(answer.body) as Echo;
    assert.equal(headers['x-customer'], 'kept');
    assert.equal(headers.host, new URL(target.origin).host);
    for (const name of [
      'proxy-authorization',
      'proxy-connection',
      'x-only-to-the-proxy',
      'te',
      'via',
      'x-forwarded-for',
    ]) {
      assert.equal(headers[name], undefined, `${name} reached the target`);
    }
  });

  test("the target's hop-by-hop headers stay at the exit; cookies and chunked bodies come through", async () => {
    const answer = await curl([...proxy(), `${target.origin}/hop-headers`]);
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'first part, second part');
    assert.deepEqual(answer.headers.get('x-end-to-end'), ['kept']);
    assert.deepEqual(answer.headers.get('set-cookie'), ['a=1; Path=/', 'b=2; Path=/']);
    assert.equal(answer.headers.get('x-hop-secret'), undefined);
    assert.equal(answer.headers.get('keep-alive'), undefined);
    assert.deepEqual(answer.headers.get('x-ipcola-exit-country'), ['de']);
  });

  test('HEAD answers carry the length and no body', async () => {
    const answer = await curl([...proxy(), '-I', `${target.origin}/echo`]);
    assert.equal(answer.status, 200);
    assert.equal(answer.body, '');
    assert.ok(Number(answer.headers.get('content-length')?.[0]) > 0);
  });

  test('a target that hangs up without answering is refused with exit_failed, and the gateway goes on', async () => {
    const refused = await curl([...proxy(), `${target.origin}/hang-up`]);
    assert.equal(refused.status, 502);
    assert.deepEqual(refused.headers.get('x-ipcola-error'), ['exit_failed']);
    assert.match(refused.headers.get('proxy-status')?.[0] ?? '', /details="exit_failed"/);
    const after = await curl([...proxy(), `${target.origin}/echo`]);
    assert.equal(after.status, 200);
  });
});
