/** Byte-exact conversations with the gateway's ports, for requests clients would not send. */
import assert from 'node:assert/strict';
import { connect } from 'node:net';

/**
 * Connects to 127.0.0.1:port, writes `bytes` (then half-closes when `end` is set), and
 * collects everything until the peer closes. Fails if it is still open after `timeoutMs`:
 * every refusal must close the connection.
 */
export async function exchange(
  port: number,
  bytes: string | Buffer,
  { timeoutMs = 15_000, end = false }: { timeoutMs?: number; end?: boolean } = {},
): Promise<Buffer> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  socket.on('error', () => {}); // a reset after the answer is fine
  socket.write(bytes);
  if (end) socket.end();
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  // Reading to the end is what makes a half-closed socket close once the peer ends too.
  socket.on('end', () => socket.destroy());
  const timer = setTimeout(() => socket.destroy(new Error('still open')), timeoutMs);
  await new Promise((resolve) => socket.once('close', resolve));
  clearTimeout(timer);
  const received = Buffer.concat(chunks);
  if (socket.errored?.message === 'still open') {
    assert.fail(`still open after ${timeoutMs} ms; got ${JSON.stringify(received.toString())}`);
  }
  return received;
}

/** exchange() for text conversations: the answer as latin1 (byte for byte). */
export async function exchangeText(port: number, request: string): Promise<string> {
  return (await exchange(port, request)).toString('latin1');
}
