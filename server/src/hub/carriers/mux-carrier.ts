/** The v2 tunnel: the multiplexer over the node's upgraded socket, the hub opening. */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { ANSWER_EVENT, MuxSession, type MuxStream } from '@ipcola/shared/mux';
import { STREAM_WINDOW_BYTES } from '@ipcola/shared/protocol';
import type { Carrier, CarrierEvents, Opening } from './carrier.ts';

export class MuxCarrier extends EventEmitter<CarrierEvents> implements Carrier {
  readonly #session: MuxSession;

  constructor(socket: Duplex) {
    super();
    const session = new MuxSession({ socket, role: 'opener', windowBytes: STREAM_WINDOW_BYTES });
    this.#session = session;
    session.once('ready', () => this.emit('ready'));
    session.on('goaway', () => this.emit('goaway'));
    session.once('close', (error) => {
      if (error) this.emit('error', error);
      this.emit('close');
    });
  }

  get ending(): boolean {
    return this.#session.closed;
  }

  get maxStreams(): number | undefined {
    return this.#session.peerMaxStreams;
  }

  get pingable(): MuxSession {
    return this.#session;
  }

  open(authority: string, exitIp: string, label: string | undefined): Opening {
    return new MuxOpening(this.#session.open({ authority, exitIp, label }));
  }

  close(why?: string): void {
    this.#session.close(why);
  }

  destroy(): void {
    this.#session.destroy();
  }
}

class MuxOpening implements Opening {
  readonly stream: MuxStream;

  constructor(stream: MuxStream) {
    this.stream = stream;
  }

  get resetCode(): number | undefined {
    return this.stream.resetCode;
  }

  whenAnswered(listener: (status: number, code: unknown) => void): () => void {
    this.stream.once(ANSWER_EVENT, listener);
    return () => this.stream.off(ANSWER_EVENT, listener);
  }

  cancel(): void {
    this.stream.destroy();
  }
}
