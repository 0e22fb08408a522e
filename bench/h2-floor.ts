/**
 * The Node floor of IPCola's architecture, for `--only floor`: a CONNECT proxy whose
 * tunnels are HTTP/2 streams to an exit process that dials the target, the way the
 * gateway's hub sends each tunnel to an agent. Nothing else: no authentication, no exit
 * selection, no metering, no limits, no time-outs, plain pipes. What the gateway pays
 * per new tunnel above this relay is ours to remove; what this relay pays above
 * proxy-chain (one hop, no multiplexing) is the price of Node's HTTP/2 streams.
 *
 *   --role exit              an HTTP/2 server: each CONNECT stream dials its :authority
 *   --role relay --exit PORT an HTTP/1.1 CONNECT proxy over one HTTP/2 session to it
 *
 * Prints `{"port":N}` on stdout once listening.
 */
import { createServer as createHttpServer } from 'node:http';
import { connect as connectHttp2, createServer as createHttp2Server } from 'node:http2';
import { connect as connectTcp, type Socket } from 'node:net';
import { floorRole, listening, pipeBoth } from './lib/floor-relay.ts';

const { role, exitPort } = floorRole();

if (role === 'exit') {
  const server = createHttp2Server();
  server.on('stream', (stream, headers) => {
    const [host, port] = String(headers[':authority']).split(':');
    const socket = connectTcp({ host, port: Number(port) });
    socket.once('connect', () => {
      stream.respond({ ':status': 200 });
      pipeBoth(stream, socket);
    });
    socket.once('error', () => stream.close());
  });
  server.listen(0, '127.0.0.1', () => listening(server));
} else if (role === 'relay') {
  const session = connectHttp2(`http://127.0.0.1:${exitPort}`);
  const server = createHttpServer();
  server.on('connect', (req, client: Socket, head: Buffer) => {
    const stream = session.request(
      { ':method': 'CONNECT', ':authority': req.url ?? '' },
      { endStream: false },
    );
    stream.once('response', (headers) => {
      if (headers[':status'] !== 200) {
        client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
        return;
      }
      client.write('HTTP/1.1 200 Connection established\r\n\r\n');
      if (head.length > 0) stream.write(head);
      pipeBoth(client, stream);
    });
    stream.once('error', () => client.destroy());
  });
  server.listen(0, '127.0.0.1', () => listening(server));
} else {
  throw new Error('--role exit or --role relay --exit PORT');
}
