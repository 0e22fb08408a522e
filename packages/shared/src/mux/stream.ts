/**
 * One stream of the tunnel multiplexer, as a Duplex: writes become DATA frames within
 * the peer's window, end() an END frame, destroy() before both ends a RESET; the
 * session feeds it the peer's frames.
 *
 * Flow control: the receiver grants its window again only for bytes its reader took
 * (a push() below the high-water mark, or a _read()), so a stalled reader stops its
 * sender after one window, and a stream never holds more than its window plus its
 * high-water mark.
 */
import { Duplex } from 'node:stream';
import {
  ANSWER,
  END,
  MAX_DATA_PAYLOAD,
  RESET,
  RESET_ABORTED,
  RESET_CANCEL,
  RESET_REFUSED,
  WINDOW,
} from './frames.ts';

/** What a stream needs from its session. */
export interface StreamLink {
  /** Writes a frame with a small payload. */
  frame(type: number, streamId: number, payload?: Buffer): void;
  /** Writes a DATA frame. */
  data(streamId: number, payload: Buffer): void;
  /** Calls back once the connection can take more (at once unless its socket is full). */
  whenWritable(callback: () => void): void;
  /** The stream is gone: drop it from the session. */
  forget(stream: MuxStream): void;
}

const RESET_WORDS: Record<number, string> = {
  [RESET_CANCEL]: 'cancelled',
  [RESET_REFUSED]: 'refused',
  [RESET_ABORTED]: 'aborted',
};

/** The peer aborted the stream (a RESET frame). */
export class StreamResetError extends Error {
  readonly code = 'ERR_TUNNEL_STREAM_RESET';
  readonly resetCode: number;
  constructor(resetCode: number) {
    super(`the peer ${RESET_WORDS[resetCode] ?? 'reset'} the stream (code ${resetCode})`);
    this.name = 'StreamResetError';
    this.resetCode = resetCode;
  }
}

/** Opener side, the acceptor's answer to the OPEN: `(status: number, code: string | undefined)`. */
export const ANSWER_EVENT = 'answer';

export class MuxStream extends Duplex {
  readonly id: number;
  /** The peer's RESET code, once it reset the stream. */
  resetCode: number | undefined;
  readonly #link: StreamLink;
  readonly #windowBytes: number;
  #sendWindow: number;
  /** Bytes received and not yet granted back to the peer. */
  #unacked = 0;
  #parked: { chunk: Buffer; callback: (error?: Error | null) => void } | undefined;
  #endSent = false;
  #remoteEnded = false;
  /** Nothing more may be sent for this stream: the peer reset or refused it, or the session is gone. */
  #silent = false;

  constructor(link: StreamLink, id: number, sendWindow: number, receiveWindow: number) {
    super({ allowHalfOpen: true });
    this.#link = link;
    this.id = id;
    this.#sendWindow = sendWindow;
    this.#windowBytes = receiveWindow;
  }

  /**
   * Acceptor side: answers the OPEN. A refusal (any status but 200) ends the stream on
   * both sides with no RESET.
   */
  respond(status: number, code?: string): void {
    if (this.#silent || this.destroyed) return;
    const text = status === 200 || code === undefined ? '' : code;
    const payload = Buffer.allocUnsafe(2 + Buffer.byteLength(text, 'latin1'));
    payload.writeUInt16BE(status, 0);
    payload.write(text, 2, 'latin1');
    this.#link.frame(ANSWER, this.id, payload);
    if (status === 200) return;
    this.#silent = true;
    this.destroy();
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    this.#send(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#endSent = true;
    if (!this.#silent) this.#link.frame(END, this.id);
    callback();
  }

  override _read(): void {
    this.#grant();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#parked = undefined;
    if (!this.#silent && !(this.#endSent && this.#remoteEnded)) {
      // As HTTP/2 does: an error is an abort, a plain destroy a cancel.
      const code = Buffer.allocUnsafe(4);
      code.writeUInt32BE(error ? RESET_ABORTED : RESET_CANCEL, 0);
      this.#link.frame(RESET, this.id, code);
    }
    this.#silent = true;
    this.#link.forget(this);
    callback(error);
  }

  /** A DATA frame; false when it breaks the protocol (past the window, or after END). */
  receiveData(payload: Buffer): boolean {
    if (this.#remoteEnded) return false;
    this.#unacked += payload.length;
    if (this.#unacked > this.#windowBytes) return false;
    if (this.destroyed) return true;
    if (this.push(payload)) this.#grant();
    return true;
  }

  receiveWindow(bytes: number): boolean {
    this.#sendWindow += bytes;
    if (this.#sendWindow > 0x7fff_ffff) return false;
    const parked = this.#parked;
    if (parked && this.#sendWindow > 0) {
      this.#parked = undefined;
      this.#send(parked.chunk, parked.callback);
    }
    return true;
  }

  receiveEnd(): boolean {
    if (this.#remoteEnded) return false;
    this.#remoteEnded = true;
    if (!this.destroyed) this.push(null);
    return true;
  }

  receiveReset(code: number): void {
    this.#silent = true;
    this.resetCode = code;
    this.destroy(new StreamResetError(code));
  }

  receiveAnswer(status: number, code: string | undefined): void {
    // A refusal ends the stream: the acceptor forgot it already, so nothing goes back.
    if (status !== 200) this.#silent = true;
    this.emit(ANSWER_EVENT, status, code);
    if (status !== 200) this.destroy();
  }

  /** The session ended: the stream goes with it, sending nothing. */
  sessionGone(error: Error | undefined): void {
    this.#silent = true;
    this.destroy(error);
  }

  #send(chunk: Buffer, callback: (error?: Error | null) => void): void {
    let offset = 0;
    while (offset < chunk.length) {
      const size = Math.min(chunk.length - offset, this.#sendWindow, MAX_DATA_PAYLOAD);
      if (size <= 0) {
        this.#parked = { chunk: chunk.subarray(offset), callback };
        return;
      }
      if (!this.#silent) this.#link.data(this.id, chunk.subarray(offset, offset + size));
      this.#sendWindow -= size;
      offset += size;
    }
    this.#link.whenWritable(callback);
  }

  /** Grants the peer the consumed bytes back, a quarter window at a time. */
  #grant(): void {
    if (this.#unacked < this.#windowBytes / 4 || this.#silent || this.#remoteEnded) return;
    const bytes = Buffer.allocUnsafe(4);
    bytes.writeUInt32BE(this.#unacked, 0);
    this.#unacked = 0;
    this.#link.frame(WINDOW, this.id, bytes);
  }
}
