/**
 * The benchmark's origin server, run as its own process (pinned to the load core).
 *
 * A minimal HTTP/1.1 responder on a raw TCP server rather than node:http: it costs a
 * fraction of node:http's CPU per request, so the core it shares with the load
 * generator is spent on generating load, and the proxy under test is what limits the
 * figures. It understands exactly what the harness and the proxies send: GET requests
 * without a body, keep-alive unless `Connection: close`.
 *
 *   /1k      1024-byte body
 *   /tiny    2-byte body
 *   /10m     10 MiB body
 *   /whoami  the address the request came from (checks that our path goes through the agent)
 *   /stats   connections accepted so far (checks connection reuse)
 *
 * Prints `{"port":N}` on stdout once listening.
 */
import { createServer, type Socket } from 'node:net';

const HEADER_END = Buffer.from('\r\n\r\n');

function response(body: Buffer, close = false): Buffer {
  const head =
    `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n` +
    `${close ? 'Connection: close\r\n' : ''}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

const bodies: Record<string, Buffer> = {
  '/1k': Buffer.alloc(1024, 0x61),
  '/tiny': Buffer.from('ok'),
  '/10m': Buffer.alloc(10 * 1024 * 1024, 0x62),
};
const ready = new Map<string, { keep: Buffer; close: Buffer }>();
for (const [path, body] of Object.entries(bodies)) {
  ready.set(path, { keep: response(body), close: response(body, true) });
}
const notFound = Buffer.from(
  'HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nContent-Type: text/plain\r\n\r\nnot found\n',
  'latin1',
);

let accepted = 0;

function serve(socket: Socket): void {
  accepted++;
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  let pending: Buffer | null = null;
  socket.on('data', (chunk: Buffer) => {
    let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = null;
    for (;;) {
      const end = buf.indexOf(HEADER_END);
      if (end < 0) {
        if (buf.length > 64 * 1024) socket.destroy();
        else if (buf.length > 0) pending = buf;
        return;
      }
      const head = buf.toString('latin1', 0, end);
      buf = buf.subarray(end + 4);
      const firstSpace = head.indexOf(' ');
      const secondSpace = head.indexOf(' ', firstSpace + 1);
      let path = head.slice(firstSpace + 1, secondSpace);
      // A proxy may pass the absolute form on; only the path matters here.
      if (path.startsWith('http://')) path = path.slice(path.indexOf('/', 7));
      const lineEnd = head.indexOf('\r\n');
      const version = head.slice(secondSpace + 1, lineEnd < 0 ? undefined : lineEnd);
      const close = version === 'HTTP/1.0' || /\r\nconnection:[ \t]*close/i.test(head);
      if (path === '/whoami') {
        socket.write(response(Buffer.from(socket.remoteAddress ?? ''), close));
      } else if (path === '/stats') {
        socket.write(response(Buffer.from(JSON.stringify({ accepted })), close));
      } else {
        const found = ready.get(path);
        socket.write(found ? (close ? found.close : found.keep) : notFound);
      }
      if (close) {
        socket.end();
        return;
      }
    }
  });
}

const server = createServer({ noDelay: true }, serve);
server.maxConnections = 1_000_000;
server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
