/**
 * The socket undici holds for one upstream connection: a thin duplex over the stream
 * through the exit, there only to decide how that stream ends.
 *
 * undici ends every connection with destroy(), also a clean one (its keep-alive timer, a
 * `Connection: close` answer, the origin's FIN, our Client.destroy() when the client
 * connection closed). Destroying an HTTP/2 stream that is still open sends RST_STREAM, and
 * the exit node's HTTP/2 server (nghttp2 >= 1.57, Node 20 has no option to change it) lets
 * through 1,000 resets and then 33 per second before it answers GOAWAY, which takes the
 * node out of the pool for every customer. Measured: with each closed client connection's
 * upstream reset, 20 clients opening a connection per request (~1,000 a second) made the
 * node send GOAWAY 4 times in 12 s, and 23,000 requests were refused no_exit_available;
 * with END_STREAM, none (customers-never-share-an-upstream-connection.test.ts keeps
 * 1,500 such connections from draining the node). So a connection at rest (no request
 * on it) ends with END_STREAM instead: the exit closes its connection to the origin and
 * ends its side, and the stream closes without a reset. Only a connection cut in the
 * middle of an exchange is reset, as it must be.
 */
import { Duplex } from 'node:stream';

/** How long an ended stream may take to close before it is reset after all. */
const END_GRACE_MS = 5_000;

export class UpstreamSocket extends Duplex {
  readonly #stream: Duplex;
  readonly #atRest: () => boolean;
  #ended = false;

  /** `atRest` tells, when undici destroys this socket, whether no exchange is under way. */
  constructor(stream: Duplex, atRest: () => boolean) {
    super({ allowHalfOpen: true });
    this.#stream = stream;
    this.#atRest = atRest;
    stream.on('data', this.#onData);
    stream.on('end', this.#onEnd);
    stream.on('error', this.#onError);
    stream.on('close', this.#onClose);
  }

  override _read(): void {
    this.#stream.resume();
  }

  override _write(
    chunk: Buffer,
    encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ) {
    this.#stream.write(chunk, encoding, callback);
  }

  override _writev(
    chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>,
    callback: (error?: Error | null) => void,
  ): void {
    // undici corks a request's head and a small body: one write through the exit for both.
    const stream = this.#stream;
    stream.cork();
    for (let i = 0; i < chunks.length - 1; i++) {
      const { chunk, encoding } = chunks[i] as { chunk: Buffer; encoding: BufferEncoding };
      stream.write(chunk, encoding);
    }
    const last = chunks[chunks.length - 1] as { chunk: Buffer; encoding: BufferEncoding };
    stream.write(last.chunk, last.encoding, callback);
    stream.uncork();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#stream.end(callback);
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    const stream = this.#stream;
    stream.off('data', this.#onData);
    stream.off('end', this.#onEnd);
    stream.off('error', this.#onError);
    stream.off('close', this.#onClose);
    if (!stream.destroyed) {
      if (this.#atRest()) endQuietly(stream);
      else stream.destroy(error ?? undefined);
    }
    callback(error);
  }

  readonly #onData = (chunk: Buffer) => {
    if (!this.push(chunk)) this.#stream.pause();
  };
  readonly #onEnd = () => {
    this.#ended = true;
    this.push(null);
  };
  readonly #onError = (error: Error) => {
    this.destroy(error);
  };
  readonly #onClose = () => {
    // Closed after its end: undici reads the rest and ends the connection itself. Closed
    // without one (reset by the exit): the connection is cut.
    if (!this.#ended && !this.destroyed) this.destroy();
  };
}

/** Ends our side and discards what still comes; resets only if the exit never closes. */
function endQuietly(stream: Duplex): void {
  stream.on('error', () => {});
  stream.resume();
  stream.end();
  const timer = setTimeout(() => stream.destroy(), END_GRACE_MS);
  timer.unref();
  stream.once('close', () => clearTimeout(timer));
}
