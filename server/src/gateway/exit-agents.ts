import { Agent, type AgentOptions } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Target } from './connector.ts';

type Open = (target: Target) => Promise<Duplex>;

/**
 * An http.Agent whose connections are streams through one exit, pooled so that plain-HTTP
 * requests to the same origin through the same exit reuse them (keep-alive).
 */
class ExitAgent extends Agent {
  constructor(
    private readonly openStream: Open,
    options: AgentOptions,
  ) {
    super(options);
    // Tunnel streams are not TCP sockets: no setKeepAlive/unref on them. Node pools a socket
    // only when keepSocketAlive returns true (@types/node declares it void).
    const base = Agent.prototype.keepSocketAlive as unknown as (this: Agent, s: Socket) => boolean;
    (this as unknown as { keepSocketAlive: (s: Socket) => boolean }).keepSocketAlive = (socket) =>
      typeof socket.setKeepAlive === 'function' ? base.call(this, socket) : true;
  }

  override createConnection(
    options: { host?: string | null; port?: number | string | null },
    callback: (error: Error | null, stream?: Duplex) => void,
  ): undefined {
    const target = { host: options.host ?? '', port: Number(options.port) };
    this.openStream(target).then(
      (stream) => {
        // A stream whose target has finished sending (it closed a keep-alive connection)
        // can carry no further answer. A socket would close itself here; an HTTP/2
        // stream stays half-open, so the pool kept it: the next request on it waited for
        // an answer until the idle timeout, and the exit kept the target socket open.
        stream.once('end', () => stream.destroy());
        callback(null, stream);
      },
      (error: Error) => callback(error),
    );
    return undefined;
  }

  override reuseSocket(socket: Socket, request: Parameters<Agent['reuseSocket']>[1]): void {
    if (typeof socket.ref === 'function') super.reuseSocket(socket, request);
    else (request as { reusedSocket?: boolean }).reusedSocket = true;
  }
}

/** One pooling agent per exit, made on first use and destroyed when the exit goes away. */
export class ExitAgents {
  readonly #agents = new Map<string, ExitAgent>();
  constructor(private readonly options: AgentOptions) {}

  for(exitId: string, open: Open): Agent {
    let agent = this.#agents.get(exitId);
    if (!agent) {
      agent = new ExitAgent(open, this.options);
      this.#agents.set(exitId, agent);
    }
    return agent;
  }

  drop(exitId: string): void {
    this.#agents.get(exitId)?.destroy();
    this.#agents.delete(exitId);
  }

  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }
}
