import type { Socket } from 'node:net';
import type { AbortNotice } from '@ipcola/shared/protocol';
import { ipcolaError } from '../errors/index.ts';

/**
 * Tells, as an abort, that a client's socket has closed: a stream still opening for it
 * has nobody to carry bytes for, and whatever opens it (the hub, an upstream proxy) should
 * stop. Its listeners are the socket's own 'close' listeners: an AbortController per new
 * connection, with its listeners, cost about 7 µs of each new tunnel (Node 20).
 */
class ClientGone implements AbortNotice {
  reason: unknown;
  readonly #socket: Socket;
  readonly #onClose = () => {
    this.reason ??= ipcolaError('exit_failed', 'the client went away while the stream opened');
  };

  constructor(socket: Socket) {
    this.#socket = socket;
    if (socket.destroyed) this.#onClose();
    // Before any listener that addEventListener adds: the reason is set when they hear.
    else socket.once('close', this.#onClose);
  }

  get aborted(): boolean {
    return this.reason !== undefined;
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    // Like an AbortSignal's: a listener added after the abort is never called.
    if (!this.aborted) this.#socket.once('close', listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    this.#socket.off('close', listener);
  }

  /** Stops watching the socket (what is listening must have stopped already). */
  stop(): void {
    this.#socket.off('close', this.#onClose);
  }
}

const watched = new WeakMap<Socket, ClientGone>();

/**
 * Aborts once the client's socket has closed. One watch per socket, so that keep-alive
 * requests share it; its reason is the same error for every open that it stopped.
 */
export function clientGone(socket: Socket): AbortNotice {
  let gone = watched.get(socket);
  if (!gone) {
    gone = new ClientGone(socket);
    watched.set(socket, gone);
  }
  return gone;
}

/**
 * Stops watching once no open waits for the socket: an idle tunnel then holds no watch.
 * An aborted one is kept, so that whoever asks why its open failed still finds the reason.
 */
export function stopWatchingClient(socket: Socket): void {
  const gone = watched.get(socket);
  if (!gone || gone.aborted) return;
  gone.stop();
  watched.delete(socket);
}

/** Above this, reading pauses while the stream opens (the client then waits, as before). */
const EARLY_DATA_LIMIT = 64 * 1024;

/** What a CONNECT client sent while its stream opened. */
export interface EarlyData {
  readonly bytes: Buffer;
  /** It half-closed after sending them: the target must see EOF after them. */
  readonly ended: boolean;
}

/**
 * Reads a CONNECT client while its stream opens: a paused socket would not notice the
 * client leave (a reset, or EOF) until the open was over. EOF before the answer with
 * nothing sent after the CONNECT request (`head` counts) means it left, as over SOCKS5,
 * and the socket is destroyed; EOF after some bytes is a half-close (a request the
 * target answers after EOF), kept for the tunnel. Returns a function that stops reading
 * and gives back what was read.
 */
export function readWhileOpening(socket: Socket, head: Buffer): () => EarlyData {
  const chunks: Buffer[] = [];
  let size = 0;
  let ended = false;
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= EARLY_DATA_LIMIT) socket.pause();
  };
  const onEnd = () => {
    ended = true;
    if (size === 0 && head.length === 0) socket.destroy();
  };
  // Our side must stay writable after the client's EOF: the answer is still to come.
  socket.allowHalfOpen = true;
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.resume();
  return () => {
    socket.pause();
    socket.off('data', onData);
    socket.off('end', onEnd);
    return { bytes: Buffer.concat(chunks), ended };
  };
}
