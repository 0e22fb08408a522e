/**
 * spliceStreams: the one way two byte streams are joined, on every proxy path
 * (gateway client socket ↔ hub stream, agent stream ↔ target socket).
 *
 * Why not pipe() or pipeline(): pipeline() destroys both streams when either reads
 * EOF, which kills half-closed TCP conversations, and pipe() neither propagates
 * errors nor counts bytes. The rules here:
 *
 * - EOF on one side ends the other side's writable half; the splice succeeds once
 *   both directions have ended and been flushed.
 * - An error, a premature close, a reset HTTP/2 stream, an idle timeout or destroy()
 *   aborts: both streams are destroyed the way their peer sees as an abort (TCP RST,
 *   HTTP/2 RST_STREAM with an error code), never as a clean EOF that would make a
 *   truncated response look complete.
 * - `write() === false` pauses the source until the destination drains, so memory
 *   stays bounded by the streams' high-water marks whatever the speeds.
 * - Byte counts are bytes whose write completed on the destination (they feed billing).
 * - With a gate (the gateway's spend allowance), no chunk is written before the gate
 *   covers it: the source pauses while the gate waits for more, and a gate that has no
 *   more aborts the splice (`SpliceError` code `refused`), so a connection moves only
 *   what its gate lets through.
 * - onEnd fires exactly once, after both streams have emitted 'close', so no event
 *   (an 'error' in particular) can arrive after the listeners are gone; every listener
 *   the splice added is removed before onEnd runs.
 *
 * Both streams get `allowHalfOpen = true`: with it false Node ends a socket's writable
 * side as soon as its readable side sees EOF, and the answer still travelling the
 * other way would be lost.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface SpliceResult {
  /** Bytes read from `a` whose write to `b` completed. */
  readonly bytesAtoB: number;
  /** Bytes read from `b` whose write to `a` completed. */
  readonly bytesBtoA: number;
  /** Why the splice was aborted; absent when both directions ended cleanly. */
  readonly error?: Error;
}

export interface SpliceOptions {
  /** Abort when no byte moved either way for this long; 0 turns the timeout off. */
  readonly idleTimeoutMs: number;
  readonly onEnd?: (result: SpliceResult) => void;
  /** What every chunk must pass, either way, before it is written. */
  readonly gate?: SpliceGate;
}

/** Lets bytes through: at once (true), or later (a promise of whether they may go). */
export interface SpliceGate {
  take(bytes: number): true | Promise<boolean>;
}

export interface Splice {
  /** Running counts, for live metering (quota checks on long tunnels). */
  readonly bytesAtoB: number;
  readonly bytesBtoA: number;
  /** True once onEnd has fired. */
  readonly ended: boolean;
  /** Aborts both streams (safe to call any number of times, and after the end). */
  destroy(error?: Error): void;
}

export type SpliceErrorCode = 'idle_timeout' | 'premature_close' | 'destroyed' | 'refused';

/** The errors the splice makes itself (a stream's own errors are passed on as they are). */
export class SpliceError extends Error {
  readonly code: SpliceErrorCode;
  constructor(code: SpliceErrorCode, message: string) {
    super(message);
    this.name = 'SpliceError';
    this.code = code;
  }
}

const spliced = new WeakMap<Duplex, StreamSplice>();

/**
 * Joins `a` and `b` until both directions end or one side fails. Calling it again with
 * the same two streams returns the same splice; with a stream that is already spliced
 * to a third one it throws, since two pumps on one stream would interleave bytes.
 */
export function spliceStreams(a: Duplex, b: Duplex, options: SpliceOptions): Splice {
  if (a === b) throw new TypeError('spliceStreams needs two different streams');
  const existing = spliced.get(a) ?? spliced.get(b);
  if (existing) {
    if (existing.joins(a, b)) return existing;
    throw new TypeError('a stream can be spliced to only one other stream');
  }
  const { idleTimeoutMs } = options;
  if (!(Number.isFinite(idleTimeoutMs) && idleTimeoutMs >= 0)) {
    throw new TypeError('idleTimeoutMs must be a finite number >= 0');
  }
  const splice = new StreamSplice(a, b, options);
  spliced.set(a, splice);
  spliced.set(b, splice);
  splice.start();
  return splice;
}

/** One direction's progress. */
interface Flow {
  bytes: number;
  /** The source emitted 'end'. */
  readEnded: boolean;
  /** The destination emitted 'finish' (our end() reached it). */
  writeFinished: boolean;
  waitingForDrain: boolean;
  /** A chunk waits for the gate: the source is paused, and its end must wait too. */
  waitingForGate: boolean;
  /** The source ended while a chunk waited for the gate. */
  endAfterGate: boolean;
}

class StreamSplice implements Splice {
  readonly #a: Duplex;
  readonly #b: Duplex;
  readonly #idleTimeoutMs: number;
  readonly #onEnd: ((result: SpliceResult) => void) | undefined;
  readonly #gate: SpliceGate | undefined;
  readonly #aToB: Flow = newFlow();
  readonly #bToA: Flow = newFlow();
  /** Removes one listener each; run when the splice ends. */
  readonly #unlisten: Array<() => void> = [];
  readonly #closed = new Set<Duplex>();
  /** running → closing (result decided, waiting for both 'close' events) → ended. */
  #phase: 'running' | 'closing' | 'ended' = 'running';
  #error: Error | undefined;
  #lastActivity = performance.now();
  #timer: NodeJS.Timeout | undefined;

  constructor(a: Duplex, b: Duplex, options: SpliceOptions) {
    this.#a = a;
    this.#b = b;
    this.#idleTimeoutMs = options.idleTimeoutMs;
    this.#onEnd = options.onEnd;
    this.#gate = options.gate;
  }

  get bytesAtoB(): number {
    return this.#aToB.bytes;
  }

  get bytesBtoA(): number {
    return this.#bToA.bytes;
  }

  get ended(): boolean {
    return this.#phase === 'ended';
  }

  joins(a: Duplex, b: Duplex): boolean {
    return this.#a === a && this.#b === b;
  }

  start(): void {
    const a = this.#a;
    const b = this.#b;
    a.allowHalfOpen = true;
    b.allowHalfOpen = true;
    this.#watch(a);
    this.#watch(b);
    this.#pump(a, b, this.#aToB);
    this.#pump(b, a, this.#bToA);
    this.#armTimer(this.#idleTimeoutMs);
    // States reached before the splice began: their events will not come again.
    for (const stream of [a, b]) {
      if (hasEmittedClose(stream)) this.#onClose(stream);
      else if (stream.destroyed) this.#fail(prematureClose());
    }
    if (a.readableEnded) this.#onReadEnd(a, b, this.#aToB);
    if (b.readableEnded) this.#onReadEnd(b, a, this.#bToA);
    if (b.writableFinished) this.#onWriteFinish(this.#aToB);
    if (a.writableFinished) this.#onWriteFinish(this.#bToA);
    // An explicitly paused stream does not flow just because a 'data' listener arrived.
    if (this.#phase === 'running') {
      a.resume();
      b.resume();
    }
  }

  destroy(error?: Error): void {
    this.#fail(error ?? new SpliceError('destroyed', 'the splice was destroyed'));
  }

  #on<Args extends unknown[]>(
    stream: Duplex,
    event: string,
    listener: (...args: Args) => void,
  ): void {
    stream.on(event, listener);
    this.#unlisten.push(() => stream.off(event, listener));
  }

  #watch(stream: Duplex): void {
    this.#on(stream, 'error', (error: Error) => this.#fail(error));
    this.#on(stream, 'close', () => this.#onClose(stream));
    // HTTP/2 streams: the peer reset the stream. What follows can look like a clean
    // end (see #onReadEnd), so the abort is taken from here.
    this.#on(stream, 'aborted', () => this.#fail(prematureClose()));
  }

  #pump(source: Duplex, destination: Duplex, flow: Flow): void {
    const write = (chunk: Buffer | string, size: number) => {
      const accepted = destination.write(chunk, (error?: Error | null) => {
        if (error) return;
        flow.bytes += size;
        this.#lastActivity = performance.now();
      });
      if (!accepted && !flow.waitingForDrain) {
        flow.waitingForDrain = true;
        source.pause();
      }
    };
    const gate = this.#gate;
    this.#on(source, 'data', (chunk: Buffer | string) => {
      this.#lastActivity = performance.now();
      const size = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      const passed = gate ? gate.take(size) : true;
      if (passed === true) {
        write(chunk, size);
        return;
      }
      flow.waitingForGate = true;
      source.pause();
      passed.then(
        (allowed) => this.#afterGate(source, destination, flow, allowed, () => write(chunk, size)),
        () => this.#afterGate(source, destination, flow, false, () => {}),
      );
    });
    this.#on(destination, 'drain', () => {
      if (!flow.waitingForDrain) return;
      flow.waitingForDrain = false;
      if (this.#phase === 'running' && !flow.waitingForGate) source.resume();
    });
    this.#on(source, 'end', () => this.#onReadEnd(source, destination, flow));
    this.#on(destination, 'finish', () => this.#onWriteFinish(flow));
  }

  #afterGate(
    source: Duplex,
    destination: Duplex,
    flow: Flow,
    allowed: boolean,
    write: () => void,
  ): void {
    flow.waitingForGate = false;
    if (this.#phase !== 'running') return;
    if (!allowed) {
      this.#fail(new SpliceError('refused', 'the gate refused more bytes'));
      return;
    }
    write();
    if (flow.endAfterGate) this.#onReadEnd(source, destination, flow);
    else if (!flow.waitingForDrain) source.resume();
  }

  #onReadEnd(source: Duplex, destination: Duplex, flow: Flow): void {
    if (this.#phase !== 'running' || flow.readEnded) return;
    if (flow.waitingForGate) {
      flow.endAfterGate = true;
      return;
    }
    // A reset HTTP/2 stream, or a stream destroyed by its owner, still emits 'end'.
    if (source.destroyed || resetCode(source) !== 0) {
      this.#fail(prematureClose());
      return;
    }
    flow.readEnded = true;
    destination.end();
    this.#checkDone();
  }

  #onWriteFinish(flow: Flow): void {
    if (this.#phase !== 'running') return;
    flow.writeFinished = true;
    this.#checkDone();
  }

  #checkDone(): void {
    const both = [this.#aToB, this.#bToA];
    if (!both.every((flow) => flow.readEnded && flow.writeFinished)) return;
    this.#phase = 'closing';
    this.#stopTimer();
    // Sockets destroy themselves here; other duplexes (HTTP/2 streams among them) may
    // wait for their peer, and destroying one that has ended both ways is clean.
    for (const stream of [this.#a, this.#b]) {
      if (stream.destroyed) continue;
      if (!isHttp2Stream(stream)) {
        stream.destroy();
        continue;
      }
      // Our END_STREAM is only queued yet: destroyed now, the stream is not closed in
      // nghttp2, and Node sends an RST_STREAM besides (submitRstStream: 6% of the
      // gateway's self time per new tunnel in the bench, 2026-12-06). The session writes
      // the queued frame before this runs (its write is an earlier immediate); the stream
      // then closes by itself, and destroying a closed stream sends nothing.
      setImmediate(() => {
        if (!stream.destroyed) stream.destroy();
      });
    }
    this.#maybeEnd();
  }

  #fail(error: Error): void {
    if (this.#phase !== 'running') return;
    this.#phase = 'closing';
    this.#error = error;
    this.#stopTimer();
    abort(this.#a, error);
    abort(this.#b, error);
    this.#maybeEnd();
  }

  #onClose(stream: Duplex): void {
    this.#closed.add(stream);
    // A socket destroys itself once both of its own halves are done, which may be
    // before the other stream has flushed: only a close before that is an abort.
    const [out, into] = stream === this.#a ? [this.#aToB, this.#bToA] : [this.#bToA, this.#aToB];
    if (this.#phase === 'running' && !(out.readEnded && into.writeFinished)) {
      this.#fail(prematureClose());
      return;
    }
    this.#maybeEnd();
  }

  #maybeEnd(): void {
    if (this.#phase !== 'closing') return;
    if (!this.#closed.has(this.#a) || !this.#closed.has(this.#b)) return;
    this.#phase = 'ended';
    for (const unlisten of this.#unlisten.splice(0)) unlisten();
    const result: SpliceResult = {
      bytesAtoB: this.#aToB.bytes,
      bytesBtoA: this.#bToA.bytes,
      ...(this.#error ? { error: this.#error } : {}),
    };
    this.#onEnd?.(result);
  }

  #armTimer(delayMs: number): void {
    if (this.#idleTimeoutMs === 0) return;
    this.#timer = setTimeout(() => this.#onTimer(), delayMs);
    // The streams keep the process alive while they matter; the timer should not.
    this.#timer.unref();
  }

  #onTimer(): void {
    this.#timer = undefined;
    if (this.#phase !== 'running') return;
    const idleMs = performance.now() - this.#lastActivity;
    if (idleMs >= this.#idleTimeoutMs) {
      this.#fail(new SpliceError('idle_timeout', `no byte moved for ${this.#idleTimeoutMs} ms`));
    } else {
      // Re-arming once per timeout instead of per chunk keeps the data path cheap.
      this.#armTimer(this.#idleTimeoutMs - idleMs);
    }
  }

  #stopTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

function newFlow(): Flow {
  return {
    bytes: 0,
    readEnded: false,
    writeFinished: false,
    waitingForDrain: false,
    waitingForGate: false,
    endAfterGate: false,
  };
}

function prematureClose(): SpliceError {
  return new SpliceError('premature_close', 'a stream closed before its end');
}

/**
 * Destroys `stream` so that its peer sees an abort. A TCP socket is reset (a FIN would
 * tell the far end the data was complete); an HTTP/2 stream destroyed with an error
 * sends RST_STREAM with an error code and no END_STREAM (`close(code)` would send
 * END_STREAM first).
 */
function abort(stream: Duplex, reason: Error): void {
  if (stream.destroyed) return;
  if (stream instanceof Socket) {
    try {
      stream.resetAndDestroy();
      return;
    } catch {
      // Not a TCP handle (TLS or a pipe): no way to send a reset, close it instead.
    }
    stream.destroy();
    return;
  }
  stream.destroy(reason);
}

/** The RST_STREAM code an HTTP/2 stream closed with; 0 for any other stream. */
/** An HTTP/2 stream (only they carry an RST_STREAM code). */
function isHttp2Stream(stream: Duplex): boolean {
  return 'rstCode' in stream;
}

function resetCode(stream: Duplex): number {
  const code = (stream as { rstCode?: unknown }).rstCode;
  return typeof code === 'number' ? code : 0;
}

/**
 * Whether 'close' was already emitted, so it will not come again. Node keeps this only
 * in the stream state (`stream.closed` turns true before the event and means "HTTP/2
 * stream closed" on HTTP/2 streams). A destroyed stream built with emitClose: false
 * never emits it, so it counts as closed.
 */
function hasEmittedClose(stream: Duplex): boolean {
  const states = stream as unknown as {
    _readableState?: { closeEmitted?: boolean; emitClose?: boolean };
    _writableState?: { closeEmitted?: boolean; emitClose?: boolean };
  };
  const readable = states._readableState;
  const writable = states._writableState;
  if (readable?.closeEmitted || writable?.closeEmitted) return true;
  return stream.destroyed && readable?.emitClose === false && writable?.emitClose === false;
}
