/**
 * One tunnel connection carrying many streams (`ipcola-tunnel.v2`). The opener (the hub)
 * opens streams, the acceptor (the agent) answers them; both send SETTINGS first, PING
 * each other and say GOAWAY before they go.
 *
 * The peer is not trusted: a frame that breaks the protocol (unknown type, oversized,
 * past a stream's window, a stream id going backwards, anything before SETTINGS) ends
 * the whole connection, and the acceptor refuses streams past its own limit.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import {
  ANSWER,
  DATA,
  END,
  FrameError,
  FrameReader,
  frameHeader,
  GOAWAY,
  MAX_STREAM_ID,
  OPEN,
  PING,
  PONG,
  RESET,
  RESET_REFUSED,
  SETTINGS,
  smallFrame,
  WINDOW,
} from './frames.ts';
import { MuxStream, type StreamLink } from './stream.ts';

/** What an OPEN asks for; the acceptor checks every field itself. */
export interface OpenRequest {
  readonly authority: string;
  readonly exitIp: string;
  readonly label: string | undefined;
}

export interface MuxSessionOptions {
  readonly socket: Duplex;
  /** The hub opens streams; the agent accepts them. */
  readonly role: 'opener' | 'acceptor';
  /** Acceptor: the most streams it carries at once; more are refused. */
  readonly maxStreams?: number;
  /** The receive window of each stream, announced in SETTINGS. */
  readonly windowBytes: number;
}

interface MuxSessionEvents {
  /** The peer's SETTINGS arrived: it speaks the protocol. */
  ready: [];
  /** Acceptor: the opener opened a stream; answer it with stream.respond(). */
  stream: [stream: MuxStream, request: OpenRequest];
  /** The peer will open or accept no new streams; open ones carry on. */
  goaway: [reason: string | undefined];
  /** The connection is gone, with the error that ended it if any. */
  close: [error: Error | undefined];
}

const MIN_WINDOW = 16 * 1024;
const MAX_WINDOW = 16 * 1024 * 1024;
const MAX_PINGS_IN_FLIGHT = 10;
/** PONGs answered while the socket waits for 'drain'; a heart-beat needs a few at most. */
const MAX_PONGS_QUEUED = 16;
const GOAWAY_REASON_MAX_BYTES = 256;
/** How long a closed connection waits for the peer's FIN before it is cut. */
const CLOSE_GRACE_MS = 2_000;
/** DATA payloads up to this size are copied behind their header (one buffer, not two). */
const COALESCE_BELOW_BYTES = 1024;

export class MuxSession extends EventEmitter<MuxSessionEvents> {
  readonly #socket: Duplex;
  readonly #opener: boolean;
  readonly #maxStreams: number;
  readonly #windowBytes: number;
  readonly #reader: FrameReader;
  readonly #streams = new Map<number, MuxStream>();
  readonly #link: StreamLink;
  readonly #pings = new Map<number, { sentAt: number; callback: PingCallback }>();
  #pingCounter = 0;
  #peer: { maxStreams: number; windowBytes: number } | undefined;
  #nextId = 1;
  #lastAcceptedId = 0;
  #closing = false;
  #destroyed = false;
  #goawaySent = false;
  #needDrain = false;
  #corked = false;
  #pongsQueued = 0;
  #lastHeardAt = performance.now();
  #drainWaiters: (() => void)[] = [];

  constructor(options: MuxSessionOptions) {
    super();
    this.#socket = options.socket;
    this.#opener = options.role === 'opener';
    this.#maxStreams = options.maxStreams ?? 0;
    this.#windowBytes = options.windowBytes;
    this.#reader = new FrameReader((type, id, payload) => this.#onFrame(type, id, payload));
    this.#link = {
      frame: (type, id, payload) => this.#write(smallFrame(type, id, payload)),
      data: (id, payload) => this.#writeData(id, payload),
      whenWritable: (callback) => {
        if (this.#needDrain) this.#drainWaiters.push(callback);
        else callback();
      },
      forget: (stream) => {
        if (this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id);
        this.#maybeFinish();
      },
    };
    const socket = this.#socket;
    socket.on('data', (chunk: Buffer) => {
      this.#lastHeardAt = performance.now();
      try {
        this.#reader.push(chunk);
      } catch (error) {
        this.destroy(error as Error);
      }
    });
    socket.on('drain', () => this.#onDrain());
    // The peer's FIN ends the connection: a tunnel has no half-closed state.
    socket.once('end', () => this.destroy());
    socket.on('error', (error) => this.destroy(error));
    socket.once('close', () => this.destroy());
    const settings = Buffer.allocUnsafe(8);
    settings.writeUInt32BE(this.#maxStreams, 0);
    settings.writeUInt32BE(this.#windowBytes, 4);
    this.#write(smallFrame(SETTINGS, 0, settings));
  }

  /** close() was called or the peer said GOAWAY: no new streams. */
  get closed(): boolean {
    return this.#closing || this.#destroyed;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** The peer's stream limit, once its SETTINGS arrived (0 from an opener). */
  get peerMaxStreams(): number | undefined {
    return this.#peer?.maxStreams;
  }

  /** performance.now() when the peer last sent anything (or the session started). */
  get lastHeardAt(): number {
    return this.#lastHeardAt;
  }

  get streamCount(): number {
    return this.#streams.size;
  }

  /** Opener: a new stream to `request`; throws when the connection takes no new stream. */
  open(request: OpenRequest): MuxStream {
    if (!this.#opener) throw new Error('only the opener opens streams');
    if (this.closed) throw new Error('the tunnel connection is closing');
    if (!this.#peer) throw new Error('the peer has not sent its SETTINGS yet');
    if (this.#nextId > MAX_STREAM_ID)
      throw new Error('the tunnel connection ran out of stream ids');
    const id = this.#nextId;
    this.#nextId += 2;
    const stream = new MuxStream(this.#link, id, this.#peer.windowBytes, this.#windowBytes);
    this.#streams.set(id, stream);
    const text = `${request.authority}\n${request.exitIp}${request.label ? `\n${request.label}` : ''}`;
    this.#write(smallFrame(OPEN, id, Buffer.from(text, 'latin1')));
    // The last id (after 2^30 streams): this connection drains, the agent dials a new one.
    if (this.#nextId > MAX_STREAM_ID) this.close('stream ids used up');
    return stream;
  }

  /** Sends a PING; the callback hears the round trip. False when too many are in flight. */
  ping(callback: PingCallback): boolean {
    if (this.#destroyed || this.#pings.size >= MAX_PINGS_IN_FLIGHT) return false;
    const id = this.#pingCounter;
    this.#pingCounter = (this.#pingCounter + 1) >>> 0;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(id, 4);
    this.#pings.set(id, { sentAt: performance.now(), callback });
    this.#write(smallFrame(PING, 0, payload));
    return true;
  }

  /** GOAWAY (with `reason`, for the peer's log), then ends once the open streams have. */
  close(reason?: string): void {
    if (this.#destroyed) return;
    this.#closing = true;
    if (!this.#goawaySent) {
      this.#goawaySent = true;
      const text = Buffer.from(reason ?? '', 'utf8').subarray(0, GOAWAY_REASON_MAX_BYTES);
      this.#write(smallFrame(GOAWAY, 0, text));
    }
    this.#maybeFinish();
  }

  /** Ends now: every stream is destroyed, with `error` if given. */
  destroy(error?: Error): void {
    if (!this.#teardown(error)) return;
    this.#socket.destroy();
  }

  /** Stops everything; false when it had already. */
  #teardown(error: Error | undefined): boolean {
    if (this.#destroyed) return false;
    this.#destroyed = true;
    this.#closing = true;
    this.#reader.stop();
    // As with HTTP/2, the streams die with the connection's error, or with none (a
    // close before their end is what tells their users).
    for (const stream of [...this.#streams.values()]) stream.sessionGone(error);
    this.#streams.clear();
    const gone = error ?? new Error('the tunnel connection closed');
    for (const { callback } of this.#pings.values()) callback(gone, 0);
    this.#pings.clear();
    this.#drainWaiters = [];
    process.nextTick(() => this.emit('close', error));
    return true;
  }

  #maybeFinish(): void {
    if (!this.#closing || this.#destroyed || this.#streams.size > 0) return;
    this.#teardown(undefined);
    // A FIN after the GOAWAY, so the peer reads it; cut if it never answers with its own.
    const socket = this.#socket;
    socket.end();
    const cut = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    cut.unref();
    socket.once('close', () => clearTimeout(cut));
  }

  #write(frame: Buffer): void {
    const socket = this.#socket;
    if (this.#destroyed || socket.destroyed || !socket.writable) return;
    this.#batch(socket);
    if (!socket.write(frame)) this.#needDrain = true;
  }

  #writeData(id: number, payload: Buffer): void {
    if (payload.length < COALESCE_BELOW_BYTES) {
      this.#write(smallFrame(DATA, id, payload));
      return;
    }
    const socket = this.#socket;
    if (this.#destroyed || socket.destroyed || !socket.writable) return;
    // Header and payload as two buffers of the batch: the payload is never copied.
    this.#batch(socket);
    socket.write(frameHeader(DATA, id, payload.length));
    if (!socket.write(payload)) this.#needDrain = true;
  }

  /**
   * Holds this tick's frames back and sends them in one writev at its end. One write per
   * frame cost the gateway a quarter of its CPU per new tunnel in the bench (writeBuffer,
   * 2026-12-06): a new tunnel is an OPEN, an ANSWER, DATA both ways, two ENDs.
   */
  #batch(socket: Duplex): void {
    if (this.#corked) return;
    this.#corked = true;
    socket.cork();
    process.nextTick(() => {
      this.#corked = false;
      socket.uncork();
    });
  }

  #onDrain(): void {
    this.#needDrain = false;
    // A waiter's write may fill the socket again: the rest wait for the next drain.
    while (!this.#needDrain && this.#drainWaiters.length > 0) this.#drainWaiters.shift()?.();
  }

  #onFrame(type: number, id: number, payload: Buffer): void {
    if (type === DATA) {
      this.#onStreamFrame(type, id, payload);
      return;
    }
    if (!this.#peer && type !== SETTINGS) throw new FrameError('a frame came before SETTINGS');
    switch (type) {
      case SETTINGS:
        this.#onSettings(id, payload);
        break;
      case OPEN:
        this.#onOpen(id, payload);
        break;
      case ANSWER:
        this.#onAnswer(id, payload);
        break;
      case WINDOW:
      case END:
      case RESET:
        this.#onStreamFrame(type, id, payload);
        break;
      case PING:
        if (id !== 0 || payload.length !== 8) throw new FrameError('a PING carries 8 bytes');
        // A peer that PINGs without reading would have us queue PONGs without end. One
        // heart-beat PINGs once per interval: past a few PONGs queued behind a full socket
        // the peer gets no more (and its heart-beat, if it has one, gives up on us).
        if (!this.#needDrain) this.#pongsQueued = 0;
        if (this.#pongsQueued < MAX_PONGS_QUEUED) {
          if (this.#needDrain) this.#pongsQueued += 1;
          this.#write(smallFrame(PONG, 0, payload));
        }
        break;
      case PONG:
        this.#onPong(payload);
        break;
      case GOAWAY:
        this.#onGoaway(payload);
        break;
      default:
        throw new FrameError(`unknown frame type ${type}`);
    }
  }

  /** DATA, WINDOW, END or RESET: frames about one stream, which may be gone already. */
  #onStreamFrame(type: number, id: number, payload: Buffer): void {
    const stream = this.#streams.get(id);
    if (!stream) {
      // A stream we reset or refused may still get what the peer sent before it heard.
      this.#checkKnown(id);
      return;
    }
    if (type === DATA) {
      if (!stream.receiveData(payload)) {
        throw new FrameError(`stream ${id} got DATA past its window or its END`);
      }
    } else if (type === WINDOW) {
      const bytes = payload.length === 4 ? payload.readUInt32BE(0) : 0;
      if (bytes === 0 || !stream.receiveWindow(bytes)) {
        throw new FrameError(`stream ${id} got a bad WINDOW (${payload.length} bytes, +${bytes})`);
      }
    } else if (type === END) {
      if (!stream.receiveEnd()) throw new FrameError(`stream ${id} ended twice`);
    } else {
      this.#streams.delete(id);
      stream.receiveReset(payload.length === 4 ? payload.readUInt32BE(0) : 0);
      this.#maybeFinish();
    }
  }

  #onPong(payload: Buffer): void {
    if (payload.length !== 8) throw new FrameError('a PONG carries 8 bytes');
    const pingId = payload.readUInt32BE(4);
    const ping = this.#pings.get(pingId);
    if (!ping) return;
    this.#pings.delete(pingId);
    ping.callback(null, performance.now() - ping.sentAt);
  }

  #onGoaway(payload: Buffer): void {
    // The answer to our own GOAWAY tells us nothing new: only the first one is news.
    if (!this.#goawaySent) {
      const reason = payload
        .toString('utf8')
        .replace(/[^\x20-\x7e]+/g, ' ')
        .trim();
      this.emit('goaway', reason || undefined);
    }
    this.close();
  }

  #onSettings(id: number, payload: Buffer): void {
    if (this.#peer) throw new FrameError('SETTINGS came twice');
    if (id !== 0 || payload.length !== 8) throw new FrameError('SETTINGS carry 8 bytes');
    const maxStreams = payload.readUInt32BE(0);
    const windowBytes = payload.readUInt32BE(4);
    if (windowBytes < MIN_WINDOW || windowBytes > MAX_WINDOW) {
      throw new FrameError(
        `a window of ${windowBytes} bytes is outside ${MIN_WINDOW}-${MAX_WINDOW}`,
      );
    }
    if (this.#opener && maxStreams === 0) throw new FrameError('the acceptor takes no streams');
    this.#peer = { maxStreams, windowBytes };
    this.emit('ready');
  }

  #onOpen(id: number, payload: Buffer): void {
    if (this.#opener) throw new FrameError('the acceptor may not open streams');
    if (id % 2 === 0 || id <= this.#lastAcceptedId) {
      throw new FrameError(`stream id ${id} is not odd and above ${this.#lastAcceptedId}`);
    }
    this.#lastAcceptedId = id;
    if (this.#streams.size >= this.#maxStreams) {
      const code = Buffer.allocUnsafe(4);
      code.writeUInt32BE(RESET_REFUSED, 0);
      this.#write(smallFrame(RESET, id, code));
      return;
    }
    const [authority = '', exitIp = '', label] = payload.toString('latin1').split('\n', 3);
    const stream = new MuxStream(this.#link, id, this.#peer?.windowBytes ?? 0, this.#windowBytes);
    this.#streams.set(id, stream);
    this.emit('stream', stream, { authority, exitIp, label: label || undefined });
  }

  #onAnswer(id: number, payload: Buffer): void {
    if (!this.#opener) throw new FrameError('the opener does not answer streams');
    if (payload.length < 2) throw new FrameError('an ANSWER carries a status');
    const stream = this.#streams.get(id);
    if (!stream) {
      this.#checkKnown(id);
      return;
    }
    const status = payload.readUInt16BE(0);
    const code = payload.length > 2 ? payload.toString('latin1', 2) : undefined;
    if (status !== 200) this.#streams.delete(id);
    stream.receiveAnswer(status, code);
    if (status !== 200) this.#maybeFinish();
  }

  /** A frame for a stream we do not hold: late if the stream existed, a violation if not. */
  #checkKnown(id: number): void {
    const highest = this.#opener ? this.#nextId - 2 : this.#lastAcceptedId;
    if (id === 0 || id > highest) throw new FrameError(`stream ${id} was never opened`);
  }
}

export type PingCallback = (error: Error | null, durationMs: number) => void;
