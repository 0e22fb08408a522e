import type { Socket } from 'node:net';
import { ipcolaError } from '../errors/index.ts';

const watched = new WeakMap<Socket, { signal: AbortSignal; abort(): void }>();

/**
 * Aborts once the client's socket has closed: a stream still opening for it has nobody
 * to carry bytes for, and whatever opens it (the hub, an upstream proxy) should stop.
 * One signal per socket, so that keep-alive requests do not each add a listener.
 */
export function clientGone(socket: Socket): AbortSignal {
  const held = watched.get(socket);
  if (held) return held.signal;
  const controller = new AbortController();
  const abort = () =>
    controller.abort(ipcolaError('exit_failed', 'the client went away while the stream opened'));
  if (socket.destroyed) abort();
  else socket.once('close', abort);
  watched.set(socket, { signal: controller.signal, abort });
  return controller.signal;
}

/**
 * Stops watching once no open waits for the socket: an idle tunnel then holds no
 * controller (1.3 KB of heap per tunnel, measured). An aborted signal is kept, so that
 * whoever asks why its open failed still finds the reason.
 */
export function stopWatchingClient(socket: Socket): void {
  const held = watched.get(socket);
  if (!held || held.signal.aborted) return;
  socket.off('close', held.abort);
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
