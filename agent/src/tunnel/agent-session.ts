/**
 * The agent's end of one tunnel connection: the hub's streams, over HTTP/2 or the
 * multiplexer as the hub chose, answered by opening egress connections and splicing
 * them to the streams.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  canonicalIp,
  type Heartbeat,
  type NodeHello,
  parseAuthority,
  startHeartbeat,
  type TunnelLogger,
  type TunnelProtocol,
} from '@ipcola/shared/protocol';
import { spliceStreams } from '@ipcola/shared/splice';
import { type TunnelErrorCode, tunnelCodeOf, tunnelStatusOf } from '@ipcola/shared/tunnel-errors';
import type { IncomingStream, ServingCarrier } from './carriers/carrier.ts';
import { H2ServingCarrier } from './carriers/h2-carrier.ts';
import { MuxServingCarrier } from './carriers/mux-carrier.ts';

export interface EgressTarget {
  readonly host: string;
  readonly port: number;
  /** The exit IP to bind the connection to; always one of the hello's exitIps. */
  readonly exitIp: string;
  /** The hub's label for the stream, for logs. */
  readonly streamLabel?: string;
}

/**
 * Opens the connection to the target (exit policy, DNS, binding the exit IP). Rejects
 * with an error whose `code` is a tunnel error code; any other rejection is answered as
 * exit_failed. `signal` aborts when the hub gave up on the stream meanwhile.
 */
export type OpenEgress = (target: EgressTarget, signal: AbortSignal) => Promise<Duplex>;

export interface AgentSessionOptions {
  readonly socket: Socket;
  /** What the hub's 101 switched to. */
  readonly protocol: TunnelProtocol;
  readonly hello: NodeHello;
  readonly openEgress: OpenEgress;
  readonly idleTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly logger: TunnelLogger;
}

interface AgentSessionEvents {
  /** The hub sent GOAWAY: no new streams will come on this connection. */
  goaway: [reason: string | undefined];
  close: [error: Error | undefined];
}

export class AgentSession extends EventEmitter<AgentSessionEvents> {
  readonly #options: AgentSessionOptions;
  readonly #log: TunnelLogger;
  readonly #carrier: ServingCarrier;
  readonly #exitIps: ReadonlySet<string>;
  #heartbeat: Heartbeat | undefined;
  #activeStreams = 0;
  #lastError: Error | undefined;
  #settled = false;

  constructor(options: AgentSessionOptions) {
    super();
    this.#options = options;
    this.#log = options.logger;
    this.#exitIps = new Set(options.hello.exitIps);
    this.#carrier =
      options.protocol === 'mux'
        ? new MuxServingCarrier(options.socket, options.hello.maxStreams)
        : new H2ServingCarrier(options.socket, options.hello.maxStreams);
    // Node hands the socket's already-buffered bytes (the hub's preface, unshifted) to
    // a new HTTP/2 session on the next tick and throws (reading 'receive' of undefined) if the
    // session was destroyed before: closing waits for that tick.
    process.nextTick(() => {
      this.#settled = true;
    });
    this.#watch();
    // A tunnel has no half-closed connection: the hub's FIN ends the session, whatever
    // allowHalfOpen the socket was made with.
    options.socket.once('end', () => this.destroy());
  }

  get activeStreams(): number {
    return this.#activeStreams;
  }

  /** GOAWAY: refuse new streams, close once the open ones are done. */
  close(): void {
    if (!this.#settled) {
      process.nextTick(() => this.close());
      return;
    }
    this.#carrier.close();
  }

  destroy(error?: Error): void {
    if (error) this.#lastError ??= error;
    if (this.#settled) this.#carrier.destroy();
    else process.nextTick(() => this.#carrier.destroy());
  }

  #watch(): void {
    const carrier = this.#carrier;
    const { pingIntervalMs, pingTimeoutMs } = this.#options;
    this.#heartbeat = startHeartbeat(carrier.pingable, {
      intervalMs: pingIntervalMs,
      timeoutMs: pingTimeoutMs,
      whenSilent: true,
      onDead: (error) => {
        this.#log.warn({ err: error }, 'the hub stopped answering PINGs');
        this.destroy(error);
      },
    });
    carrier.on('stream', (incoming) => {
      this.#serve(incoming).catch((error: unknown) => {
        this.#log.error({ err: error }, 'stream handling failed');
        incoming.stream.destroy();
      });
    });
    carrier.on('goaway', (reason) => this.emit('goaway', reason));
    carrier.on('error', (error) => {
      this.#lastError ??= error;
    });
    carrier.once('close', () => {
      this.#heartbeat?.stop();
      this.emit('close', this.#lastError);
    });
  }

  async #serve(incoming: IncomingStream): Promise<void> {
    const { stream } = incoming;
    // Errors are followed by 'close', which is what the code below acts on; an unheard
    // 'error' would crash the agent.
    stream.on('error', (error) => this.#log.debug({ err: error }, 'stream error'));
    this.#activeStreams += 1;
    stream.once('close', () => {
      this.#activeStreams -= 1;
    });
    if (this.#carrier.closed) {
      // Draining (a stream that crossed our GOAWAY): nothing was done, the hub may retry.
      incoming.refuse(503, 'exit_failed');
      return;
    }
    const target = this.#readTarget(incoming);
    if ('refusal' in target) {
      incoming.refuse(target.status, target.refusal);
      return;
    }

    // The hub resets the stream if it gives up (customer gone, its own timeout).
    const cancel = new AbortController();
    const onGone = () => cancel.abort(new Error('the hub cancelled the stream'));
    stream.once('close', onGone);
    let egress: Duplex;
    try {
      egress = await this.#options.openEgress(target, cancel.signal);
    } catch (error) {
      const code = tunnelCodeOf(error);
      this.#log.debug({ stream: target.streamLabel, code, err: error }, 'egress refused');
      incoming.refuse(tunnelStatusOf(code), code);
      return;
    } finally {
      stream.off('close', onGone);
    }
    if (stream.destroyed || stream.closed) {
      egress.destroy();
      return;
    }
    incoming.accept();
    spliceStreams(stream, egress, {
      idleTimeoutMs: this.#options.idleTimeoutMs,
      onEnd: (result) =>
        this.#log.debug(
          {
            stream: target.streamLabel,
            up: result.bytesAtoB,
            down: result.bytesBtoA,
            err: result.error,
          },
          'stream ended',
        ),
    });
  }

  #readTarget(
    incoming: IncomingStream,
  ): EgressTarget | { status: number; refusal: TunnelErrorCode } {
    if (!incoming.isConnect) return { status: 405, refusal: 'exit_failed' };
    const authority = parseAuthority(incoming.authority ?? '');
    if (!authority) return { status: 400, refusal: 'target_unreachable' };
    const exitIp = typeof incoming.exitIp === 'string' ? canonicalIp(incoming.exitIp) : null;
    // Only addresses this node announced: never bind what the hub made up.
    if (exitIp === null || !this.#exitIps.has(exitIp)) {
      return { status: 400, refusal: 'exit_failed' };
    }
    const { label } = incoming;
    return {
      host: authority.host,
      port: authority.port,
      exitIp,
      ...(typeof label === 'string' ? { streamLabel: label } : {}),
    };
  }
}
