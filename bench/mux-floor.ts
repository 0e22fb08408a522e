/**
 * A second floor for `--only floor`: the same relay and exit as h2-floor.ts, but the
 * tunnels are streams of a minimal multiplexer written in JavaScript over one TCP
 * connection instead of Node's HTTP/2. It has no flow control, no PING, no limits: it is
 * a lower bound for what a lighter tunnel protocol could cost per new tunnel, to weigh
 * against Node's HTTP/2 before writing a real one.
 *
 * Frame: type (1 byte), stream id (4), payload length (4), payload.
 *   OPEN "host:port" (relay → exit), OK (exit → relay), DATA, END (half-close), RESET.
 *
 *   --role exit              listens; each OPEN dials its target
 *   --role relay --exit PORT an HTTP/1.1 CONNECT proxy over one connection to it
 *
 * Prints `{"port":N}` on stdout once listening.
 */
import { createServer as createHttpServer } from 'node:http';
import { connect as connectTcp, createServer as createTcpServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { floorRole, listening, pipeBoth } from './lib/floor-relay.ts';

const { role, exitPort } = floorRole();

const OPEN = 1;
const OK = 2;
const DATA = 3;
const END = 4;
const RESET = 5;

/** One connection carrying many streams. */
class Mux {
  readonly streams = new Map<number, MuxStream>();
  #pending: Buffer = Buffer.alloc(0);

  constructor(
    readonly socket: Socket,
    private readonly onFrame: (type: number, id: number, payload: Buffer) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#read(chunk));
  }

  send(type: number, id: number, payload: Buffer = Buffer.alloc(0)): void {
    const head = Buffer.allocUnsafe(9);
    head.writeUInt8(type, 0);
    head.writeUInt32BE(id, 1);
    head.writeUInt32BE(payload.length, 5);
    this.socket.write(payload.length > 0 ? Buffer.concat([head, payload]) : head);
  }

  #read(chunk: Buffer): void {
    let data = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    while (data.length >= 9) {
      const length = data.readUInt32BE(5);
      if (data.length < 9 + length) break;
      this.onFrame(data.readUInt8(0), data.readUInt32BE(1), data.subarray(9, 9 + length));
      data = data.subarray(9 + length);
    }
    this.#pending = data;
  }
}

class MuxStream extends Duplex {
  constructor(
    private readonly mux: Mux,
    readonly id: number,
  ) {
    super({ allowHalfOpen: true });
    mux.streams.set(id, this);
  }
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.mux.send(DATA, this.id, chunk);
    done();
  }
  override _final(done: () => void): void {
    this.mux.send(END, this.id);
    done();
  }
  override _destroy(error: Error | null, done: (error: Error | null) => void): void {
    if (this.mux.streams.delete(this.id) && !(this.writableFinished && this.readableEnded)) {
      this.mux.send(RESET, this.id);
    }
    done(error);
  }
  /** A frame for this stream from the other side. */
  receive(type: number, payload: Buffer): void {
    if (type === DATA) this.push(Buffer.from(payload));
    else if (type === END) this.push(null);
    else if (type === RESET) this.destroy();
  }
}

if (role === 'exit') {
  const server = createTcpServer((socket) => {
    const mux: Mux = new Mux(socket, (type, id, payload) => {
      if (type !== OPEN) {
        mux.streams.get(id)?.receive(type, payload);
        return;
      }
      const [host, port] = payload.toString().split(':');
      const stream = new MuxStream(mux, id);
      const target = connectTcp({ host, port: Number(port) });
      target.once('connect', () => {
        mux.send(OK, id);
        pipeBoth(stream, target);
      });
      target.once('error', () => stream.destroy());
    });
  });
  server.listen(0, '127.0.0.1', () => listening(server));
} else if (role === 'relay') {
  const waiting = new Map<number, () => void>();
  const mux: Mux = new Mux(
    connectTcp({ host: '127.0.0.1', port: exitPort }),
    (type, id, payload) => {
      if (type === OK) waiting.get(id)?.();
      else mux.streams.get(id)?.receive(type, payload);
    },
  );
  let nextId = 1;
  const server = createHttpServer();
  server.on('connect', (req, client: Socket, head: Buffer) => {
    const id = nextId++;
    const stream = new MuxStream(mux, id);
    waiting.set(id, () => {
      waiting.delete(id);
      client.write('HTTP/1.1 200 Connection established\r\n\r\n');
      if (head.length > 0) stream.write(head);
      pipeBoth(client, stream);
    });
    mux.send(OPEN, id, Buffer.from(req.url ?? ''));
  });
  server.listen(0, '127.0.0.1', () => listening(server));
} else {
  throw new Error('--role exit or --role relay --exit PORT');
}
