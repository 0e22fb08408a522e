/**
 * Clients that do unusual things with their connection, against the real server and a
 * real exit node: half-closing, leaving in the middle of a body, sending a second CONNECT
 * inside a tunnel. Each must get what TCP and HTTP promise, and afterwards no connection
 * may be left open: none from customers to the gateway, none from the exit to the
 * target (each of those is one hub stream), checked from outside through /proc.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { eventually } from './support/engines.ts';
import { type ProxyNetwork, startProxyNetwork } from './support/proxy-network.ts';
import { exchange } from './support/raw-exchange.ts';

/** A target that reads until EOF, then answers with what it read, shouted, and ends. */
interface Shouter {
  port: number;
  /** Everything each connection sent, in order of EOF. */
  heard: string[];
  connections: number;
  /** Connections that closed before their EOF (a reset). */
  cut: number;
  /** Connections closed, whichever way. */
  closed: number;
}

/** What the shouter answers: ASCII letters upper-cased, every other byte as it was. */
const shout = (text: string) => text.replace(/[a-z]/g, (letter) => letter.toUpperCase());

async function listenTcp(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

/** Sockets connected to 127.0.0.1:port, reading (and keeping) all they get. */
function dial(port: number): { socket: Socket; received: () => string; closed: Promise<boolean> } {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  socket.on('error', () => {});
  let text = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    text += chunk;
  });
  const closed = new Promise<boolean>((resolve) => socket.once('close', resolve));
  return { socket, received: () => text, closed };
}

async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  await eventually(condition, timeoutMs, what);
}

describe('clients that half-close or vanish leave nothing open', () => {
  let net: ProxyNetwork;
  let auth: string;
  let socksHello: Buffer;
  const servers: Server[] = [];
  let shouter: Shouter;
  /** A target that must never be reached. */
  let decoyPort: number;
  let decoyConnections = 0;

  before(async () => {
    net = await startProxyNetwork([{ ip: '127.0.0.12', country: 'de' }]);
    auth = `Basic ${Buffer.from(`${net.key.id}-country-de:${net.key.secret}`).toString('base64')}`;
    const user = Buffer.from(`${net.key.id}-country-de`);
    const pass = Buffer.from(net.key.secret);
    socksHello = Buffer.concat([
      Buffer.from([0x05, 0x01, 0x02, 0x01, user.length]),
      user,
      Buffer.from([pass.length]),
      pass,
    ]);

    shouter = { port: 0, heard: [], connections: 0, cut: 0, closed: 0 };
    const shoutServer = createServer({ allowHalfOpen: true }, (socket) => {
      shouter.connections += 1;
      let text = '';
      let ended = false;
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        text += chunk;
      });
      socket.on('end', () => {
        ended = true;
        shouter.heard.push(text);
        socket.end(Buffer.from(shout(text), 'latin1'));
      });
      socket.on('error', () => {});
      socket.on('close', () => {
        shouter.closed += 1;
        if (!ended) shouter.cut += 1;
      });
    });
    servers.push(shoutServer);
    shouter.port = await listenTcp(shoutServer);

    const decoy = createServer((socket) => {
      decoyConnections += 1;
      socket.destroy();
    });
    servers.push(decoy);
    decoyPort = await listenTcp(decoy);
  });

  afterEach(async () => {
    // Whatever a test did, once its clients are gone nothing may stay open.
    await until(async () => (await net.clientConnections()).length === 0, 'client connections');
    for (const port of [shouter.port, decoyPort]) {
      assert.deepEqual(await net.egressConnections(port), [], `exit connections to ${port}`);
    }
    assert.equal(decoyConnections, 0, 'the decoy target was reached');
    assert.equal(net.server.child.exitCode, null, 'the server is still running');
  });

  after(async () => {
    for (const server of servers) server.close();
    await net?.close();
  });

  const connectRequest = (port: number) =>
    `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${auth}\r\n\r\n`;
  const socksConnect = (port: number) =>
    Buffer.concat([
      socksHello,
      Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, port >> 8, port & 0xff]),
    ]);

  test('a second CONNECT inside a CONNECT tunnel is data for the target, and opens nothing', async () => {
    const inner = connectRequest(decoyPort);
    const heardBefore = shouter.heard.length;
    const answer = (
      await exchange(net.ports.proxy, `${connectRequest(shouter.port)}${inner}`, { end: true })
    ).toString('latin1');
    const [head = '', ...rest] = answer.split('\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 200 Connection established\r\n/);
    // The target read the inner request byte for byte, and its answer came back.
    assert.equal(shouter.heard.length, heardBefore + 1);
    assert.equal(shouter.heard.at(-1), inner);
    assert.equal(rest.join('\r\n\r\n'), shout(inner));
  });

  test('a second SOCKS5 handshake inside a SOCKS5 tunnel is data for the target, and opens nothing', async () => {
    const inner = socksConnect(decoyPort);
    const client = dial(net.ports.socks);
    client.socket.write(socksConnect(shouter.port));
    // (Half-closing before the success reply counts as leaving: wait for it.)
    await until(() => client.received().length >= 14, 'the SOCKS5 replies');
    assert.equal(
      Buffer.from(client.received(), 'latin1').toString('hex'),
      '0502010005000001000000000000',
    );
    client.socket.end(inner);
    assert.equal(await client.closed, false, 'closed cleanly, not reset');
    assert.equal(shouter.heard.at(-1), inner.toString('latin1'));
    assert.equal(client.received().slice(14), shout(inner.toString('latin1')));
  });

  test('a client that half-closes a CONNECT tunnel: the target sees EOF and its answer still arrives', async () => {
    const client = dial(net.ports.proxy);
    client.socket.write(connectRequest(shouter.port));
    await until(() => client.received().includes('\r\n\r\n'), 'the 200');
    assert.match(client.received(), /^HTTP\/1\.1 200 /);
    client.socket.write('half a conversation');
    client.socket.end();
    // The shouter answers only after EOF: its answer proves the half-close got through.
    assert.equal(await client.closed, false, 'closed cleanly, not reset');
    assert.ok(client.received().endsWith('\r\n\r\nHALF A CONVERSATION'), client.received());
    assert.equal(shouter.heard.at(-1), 'half a conversation');
  });

  test('a client that half-closes a SOCKS5 tunnel: the target sees EOF and its answer still arrives', async () => {
    const client = dial(net.ports.socks);
    client.socket.write(socksConnect(shouter.port));
    await until(() => client.received().length >= 14, 'the SOCKS5 replies');
    client.socket.write('socks, half closed');
    client.socket.end();
    assert.equal(await client.closed, false, 'closed cleanly, not reset');
    assert.equal(client.received().slice(14), 'SOCKS, HALF CLOSED');
  });

  test('a client that half-closes the HTTP proxy connection has left: it is closed at once, mid-head or after a request', async () => {
    // As with most proxies (and Node's HTTP server), EOF from the client ends the
    // exchange: a request still being forwarded is abandoned, nothing waits for a timeout.
    for (const head of [
      `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authoriz`,
      `GET ${net.target}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${auth}\r\n\r\n`,
    ]) {
      const started = performance.now();
      const answer = await exchange(net.ports.proxy, head, { end: true, timeoutMs: 5_000 });
      assert.ok(performance.now() - started < 5_000);
      // Nothing, a refusal of the unfinished head, or the whole answer: never part of one.
      assert.match(
        answer.toString(),
        /^(|HTTP\/1\.1 400 [\s\S]*\r\nX-IPCola-Error: bad_params\r\n[\s\S]*|HTTP\/1\.1 200 [\s\S]*\r\n\r\n127\.0\.0\.12)$/,
      );
    }
    await until(
      async () => (await net.egressConnections(net.targetPort)).length === 0,
      "the exit's connections to the target to close",
      15_000,
    );
  });

  test('a client that vanishes in the middle of a request body: the target sees the request aborted', async () => {
    const uploads: Array<{ bytes: number; complete: boolean | null }> = [];
    const target = createHttpServer((req: IncomingMessage, res) => {
      if (req.url !== '/upload') return void res.end('ok');
      const upload = { bytes: 0, complete: null as boolean | null };
      uploads.push(upload);
      req.on('data', (chunk: Buffer) => {
        upload.bytes += chunk.length;
      });
      req.on('close', () => {
        upload.complete = req.complete;
      });
    });
    servers.push(target);
    const port = await listenTcp(target);
    const client = dial(net.ports.proxy);
    client.socket.write(
      `POST http://127.0.0.1:${port}/upload HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${auth}\r\nContent-Length: 10000000\r\n\r\n`,
    );
    client.socket.write(Buffer.alloc(256 * 1024, 0x75));
    await until(() => (uploads[0]?.bytes ?? 0) >= 256 * 1024, 'the first part at the target');
    client.socket.destroy();
    await until(() => uploads[0]?.complete === false, 'the target to see the request aborted');
    assert.equal(uploads.length, 1);
    assert.equal(uploads[0]?.bytes, 256 * 1024, 'no byte more than the client sent');
    await until(
      async () => (await net.egressConnections(port)).length === 0,
      "the exit's connection to the target to close",
    );
    // The same target through the same exit answers the next request.
    const next = await exchange(
      net.ports.proxy,
      `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${auth}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(next.toString(), /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nok$/);
    target.closeAllConnections();
  });

  test('a client whose connection is reset in the middle of an upload through CONNECT: the target connection is closed', async () => {
    const client = dial(net.ports.proxy);
    client.socket.write(connectRequest(shouter.port));
    await until(() => client.received().includes('\r\n\r\n'), 'the 200');
    const connections = shouter.connections;
    const { closed, cut, heard } = { ...shouter, heard: shouter.heard.length };
    client.socket.write(Buffer.alloc(512 * 1024, 0x75));
    // (A plain close would send a FIN after the data: a half-close, tested above.)
    client.socket.resetAndDestroy();
    await until(() => shouter.closed > closed, 'the target connection to close', 20_000);
    assert.equal(shouter.connections, connections);
    // Usually the reset travels as a reset. Linux may also report a reset that arrives
    // behind unread data as EOF, which no proxy can tell from a finished upload: then the
    // target hears a clean end, but never a byte the client did not send.
    assert.equal(shouter.cut + shouter.heard.length, cut + heard + 1);
    for (const text of shouter.heard.slice(heard)) {
      assert.ok(text.length <= 512 * 1024 && /^u*$/.test(text), `heard ${text.length} bytes`);
    }
  });

  test('a pooled connection whose target closed it is dropped: the next request is answered at once', async () => {
    const target = createHttpServer((_req, res) => res.end('pooled'));
    target.keepAliveTimeout = 300; // the target soon closes idle keep-alive connections
    servers.push(target);
    const port = await listenTcp(target);
    const get = () =>
      exchange(
        net.ports.proxy,
        `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: t\r\nProxy-Authorization: ${auth}\r\nConnection: close\r\n\r\n`,
        { timeoutMs: 5_000 },
      ).then(String);
    assert.match(await get(), /\r\n\r\npooled$/);
    // The gateway keeps the stream to the target for reuse, until the target closes it.
    await until(
      async () => (await net.egressConnections(port)).every((c) => c.state !== 'ESTABLISHED'),
      'the target to close the idle connection',
    );
    await until(
      async () => (await net.egressConnections(port)).length === 0,
      "the exit's half of that connection to close too",
    );
    assert.match(await get(), /\r\n\r\npooled$/);
    await until(
      async () => (await net.egressConnections(port)).length === 0,
      'the second connection to be closed by the target as well',
    );
    target.close();
  });
});
