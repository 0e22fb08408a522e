/**
 * The wire format of the tunnel multiplexer (`ipcola-tunnel.v2`): frames of a 9-byte
 * header (type, stream id, payload length; big-endian) and a payload, and the reader
 * that cuts a byte stream back into them.
 *
 * Why our own and not HTTP/2: per new stream, Node's HTTP/2 costs the hub 1.4-1.5x what
 * proxy-chain spends on a whole tunnel (bench `--only floor`, 2026-12-06: 497-563 µs
 * against 330-400), and a minimal JavaScript multiplexer 0.93-0.97x. The JavaScript
 * yamux ports were no way out: one is bound to libp2p's async iterables, the other
 * (yamux-js 0.2) drops a DATA frame that arrives split across two reads.
 */

export const FRAME_HEADER_BYTES = 9;

/** Frame types. Stream id 0 is the connection itself (SETTINGS, PING, PONG, GOAWAY). */
export const SETTINGS = 0;
/** Opener → acceptor: a new stream; payload `authority\nexitIp[\nlabel]` (ASCII). */
export const OPEN = 1;
/** Acceptor → opener: status (u16), then the tunnel error code (ASCII) when not 200. */
export const ANSWER = 2;
export const DATA = 3;
/** The receiver consumed this many more bytes (u32) of the stream: its sender may send them. */
export const WINDOW = 4;
/** The sender's half of the stream is done (a FIN). */
export const END = 5;
/** The stream is aborted both ways; payload: a reset code (u32). */
export const RESET = 6;
/** 8 opaque bytes, echoed back in a PONG. */
export const PING = 7;
export const PONG = 8;
/** No new streams on this connection; open ones carry on. Payload: a reason (UTF-8). */
export const GOAWAY = 9;

/** Reset codes, for logs and error messages: the stream is not wanted any more. */
export const RESET_CANCEL = 1;
/** The acceptor already carries as many streams as its SETTINGS said. */
export const RESET_REFUSED = 2;
/** The stream failed at the sender's side (its other end was reset, say). */
export const RESET_ABORTED = 3;

/**
 * Largest DATA payload. Larger frames save headers but delay PINGs and other streams'
 * frames queued behind them; 64 KiB is one socket read.
 */
export const MAX_DATA_PAYLOAD = 64 * 1024;
/** Largest payload of any other frame (an OPEN's authority, label and exit IP fit). */
export const MAX_CONTROL_PAYLOAD = 1024;

/** Highest stream id: ids are u32 and the opener uses odd ones only, counting up. */
export const MAX_STREAM_ID = 0x7fff_ffff;

export function frameHeader(type: number, streamId: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header[0] = type;
  header.writeUInt32BE(streamId, 1);
  header.writeUInt32BE(length, 5);
  return header;
}

/** A frame with a small payload, header and payload in one buffer (one write). */
export function smallFrame(type: number, streamId: number, payload?: Buffer): Buffer {
  const length = payload?.length ?? 0;
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + length);
  frame[0] = type;
  frame.writeUInt32BE(streamId, 1);
  frame.writeUInt32BE(length, 5);
  payload?.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

export class FrameError extends Error {
  readonly code = 'ERR_TUNNEL_PROTOCOL';
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

/**
 * Payloads below this are copied out of the socket's read buffer: a slice would keep the
 * whole read (up to 64 KiB) alive, and a peer sending tiny frames could make a
 * stream's window of buffered bytes hold many times its size in memory.
 */
const COPY_BELOW_BYTES = 16 * 1024;

/**
 * Cuts the socket's bytes into frames. `onFrame` is called for each whole frame in
 * order; `push` throws a FrameError at the first frame longer than its type allows
 * (before buffering it), and reads nothing more after that or after `stop()`.
 */
export class FrameReader {
  readonly #onFrame: (type: number, streamId: number, payload: Buffer) => void;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Bytes the next frame needs before anything can be read from it. */
  #needed = FRAME_HEADER_BYTES;
  #stopped = false;

  constructor(onFrame: (type: number, streamId: number, payload: Buffer) => void) {
    this.#onFrame = onFrame;
  }

  stop(): void {
    this.#stopped = true;
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  push(chunk: Buffer): void {
    if (this.#stopped) return;
    let data = chunk;
    if (this.#pendingBytes > 0) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
      // Joining only once the frame is complete keeps a large frame in many reads linear.
      if (this.#pendingBytes < this.#needed) return;
      data = Buffer.concat(this.#pending, this.#pendingBytes);
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    let offset = 0;
    while (!this.#stopped) {
      const left = data.length - offset;
      if (left < FRAME_HEADER_BYTES) {
        this.#needed = FRAME_HEADER_BYTES;
        break;
      }
      const type = data[offset] as number;
      const length = data.readUInt32BE(offset + 5);
      const limit = type === DATA ? MAX_DATA_PAYLOAD : MAX_CONTROL_PAYLOAD;
      if (length > limit) {
        this.stop();
        throw new FrameError(`a frame of type ${type} carries ${length} bytes (limit ${limit})`);
      }
      if (left < FRAME_HEADER_BYTES + length) {
        this.#needed = FRAME_HEADER_BYTES + length;
        break;
      }
      const start = offset + FRAME_HEADER_BYTES;
      const slice = data.subarray(start, start + length);
      const payload = length < COPY_BELOW_BYTES ? Buffer.from(slice) : slice;
      const streamId = data.readUInt32BE(offset + 1);
      offset = start + length;
      this.#onFrame(type, streamId, payload);
    }
    if (this.#stopped || offset >= data.length) return;
    const rest = data.subarray(offset);
    this.#pending.push(rest);
    this.#pendingBytes = rest.length;
  }
}
