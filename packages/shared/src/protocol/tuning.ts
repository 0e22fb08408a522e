/**
 * HTTP/2 settings shared by both ends of the tunnel.
 *
 * A stream moves about half its window per round trip (the receiver sends
 * WINDOW_UPDATE once half is consumed). Measured through a relay adding 50 ms of
 * round trip, one stream: 6 Mbit/s with Node's 64 KiB default, 82 Mbit/s with 1 MiB,
 * 318 Mbit/s with 4 MiB.
 *
 * Per-stream windows are also what bound memory: Node replenishes a stream's window
 * only as its reader consumes, so a slow reader stops its sender after at most one
 * stream window (plus the stream's high-water mark). The connection window is
 * replenished by Node as soon as data arrives, so it bounds bytes in flight, not
 * memory, and can be large. DATA frame size (16 KiB to 256 KiB) made no measurable
 * difference, so it keeps its default, which lets PINGs interleave sooner.
 */
import type { Http2Session, Settings } from 'node:http2';

/** Per stream: ~80 Mbit/s at 50 ms RTT, and the most a stalled reader makes us hold. */
export const STREAM_WINDOW_BYTES = 1024 * 1024;

/** 32 MiB for the whole tunnel: many streams at full speed over a long, fat link. */
export const CONNECTION_WINDOW_BYTES = 32 * 1024 * 1024;

/**
 * Node refuses new streams (ENHANCE_YOUR_CALM) once a session holds more than this
 * many MB of frames and buffers; the 10 MB default is below one connection window.
 */
export const MAX_SESSION_MEMORY_MB = 128;

export const DEFAULT_PING_INTERVAL_MS = 5_000;
export const DEFAULT_PING_TIMEOUT_MS = 10_000;

/** SETTINGS both ends announce. Only the node (HTTP/2 server) sets maxConcurrentStreams. */
export function tunnelSettings(maxConcurrentStreams?: number): Settings {
  return {
    enablePush: false,
    initialWindowSize: STREAM_WINDOW_BYTES,
    ...(maxConcurrentStreams === undefined ? {} : { maxConcurrentStreams }),
  };
}

/**
 * Widens the connection-level receive window. Call on the session's 'connect' event,
 * which Node emits even for a session destroyed meanwhile (when this would throw).
 */
export function widenConnectionWindow(session: Http2Session): void {
  if (session.destroyed || session.closed) return;
  session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
}
