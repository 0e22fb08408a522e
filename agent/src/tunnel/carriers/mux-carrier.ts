/** The v2 tunnel: the multiplexer over the socket the agent dialled, the agent accepting. */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { MuxSession, type MuxStream, type OpenRequest } from '@ipcola/shared/mux';
import { STREAM_WINDOW_BYTES } from '@ipcola/shared/protocol';
import type { IncomingStream, ServingCarrier, ServingCarrierEvents } from './carrier.ts';

export class MuxServingCarrier
  extends EventEmitter<ServingCarrierEvents>
  implements ServingCarrier
{
  readonly #session: MuxSession;

  constructor(socket: Socket, maxStreams: number) {
    super();
    socket.setNoDelay(true);
    const session = new MuxSession({
      socket,
      role: 'acceptor',
      maxStreams,
      windowBytes: STREAM_WINDOW_BYTES,
    });
    this.#session = session;
    session.on('stream', (stream, request) => this.emit('stream', incoming(stream, request)));
    session.on('goaway', (reason) => this.emit('goaway', reason));
    session.once('close', (error) => {
      if (error) this.emit('error', error);
      this.emit('close');
    });
  }

  get closed(): boolean {
    return this.#session.closed;
  }

  get pingable(): MuxSession {
    return this.#session;
  }

  close(): void {
    this.#session.close();
  }

  destroy(): void {
    this.#session.destroy();
  }
}

function incoming(stream: MuxStream, request: OpenRequest): IncomingStream {
  return {
    stream,
    isConnect: true,
    authority: request.authority,
    exitIp: request.exitIp,
    label: request.label,
    accept: () => stream.respond(200),
    refuse: (status, code) => stream.respond(status, code),
  };
}
