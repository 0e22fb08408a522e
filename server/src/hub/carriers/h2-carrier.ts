/**
 * The v1 tunnel: an HTTP/2 client session over the node's upgraded socket, each stream a
 * CONNECT request. Kept for agents that do not speak v2 yet.
 */
import { EventEmitter } from 'node:events';
import { type ClientHttp2Session, type ClientHttp2Stream, connect, constants } from 'node:http2';
import type { Duplex } from 'node:stream';
import {
  ERROR_HEADER,
  EXIT_IP_HEADER,
  MAX_SESSION_MEMORY_MB,
  STREAM_LABEL_HEADER,
  tunnelSettings,
  widenConnectionWindow,
} from '@ipcola/shared/protocol';
import type { Carrier, CarrierEvents, Opening } from './carrier.ts';

export class H2Carrier extends EventEmitter<CarrierEvents> implements Carrier {
  readonly #session: ClientHttp2Session;

  constructor(socket: Duplex, maxStreams: number) {
    super();
    // The authority is only a default for requests; every CONNECT carries its own.
    const session = connect('http://exit-node.invalid', {
      createConnection: () => socket,
      settings: tunnelSettings(),
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      // Until the node's SETTINGS say otherwise, do not open more than it announced.
      peerMaxConcurrentStreams: maxStreams,
    });
    this.#session = session;
    session.once('connect', () => widenConnectionWindow(session));
    session.once('remoteSettings', () => this.emit('ready'));
    session.on('goaway', () => this.emit('goaway'));
    session.on('error', (error) => this.emit('error', error));
    session.once('close', () => this.emit('close'));
  }

  get ending(): boolean {
    return this.#session.closed || this.#session.destroyed;
  }

  get maxStreams(): number | undefined {
    return this.#session.remoteSettings.maxConcurrentStreams;
  }

  get pingable(): ClientHttp2Session {
    return this.#session;
  }

  open(authority: string, exitIp: string, label: string | undefined): Opening {
    const stream = this.#session.request(
      {
        ':method': 'CONNECT',
        ':authority': authority,
        [EXIT_IP_HEADER]: exitIp,
        ...(label ? { [STREAM_LABEL_HEADER]: label } : {}),
      },
      { endStream: false },
    );
    return new H2Opening(stream);
  }

  close(why?: string): void {
    if (this.ending) return;
    if (why) this.#session.goaway(constants.NGHTTP2_NO_ERROR, 0, Buffer.from(why, 'utf8'));
    this.#session.close();
  }

  destroy(): void {
    this.#session.destroy();
  }
}

class H2Opening implements Opening {
  readonly stream: ClientHttp2Stream;

  constructor(stream: ClientHttp2Stream) {
    this.stream = stream;
  }

  get resetCode(): number | undefined {
    return this.stream.rstCode;
  }

  whenAnswered(listener: (status: number, code: unknown) => void): () => void {
    const onResponse = (headers: Record<string, unknown>) =>
      listener(Number(headers[':status']), headers[ERROR_HEADER]);
    this.stream.once('response', onResponse);
    return () => this.stream.off('response', onResponse);
  }

  cancel(): void {
    if (!this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL);
  }
}
