import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * The responses still being written on each client connection of the HTTP proxy, so that an
 * answer Node lets us write straight to the socket comes after them, in request order.
 *
 * Node's http server emits 'connect' (and 'upgrade', and 'clientError' for a request it cannot
 * parse) as soon as that request is parsed, while the answers to the requests pipelined
 * before it on the same connection may still be streaming from their targets. Writing
 * `200 Connection established` then would put the tunnel's bytes inside those answers, or
 * theirs inside the tunnel. afterEarlierResponses() holds such an answer until the earlier
 * responses have closed (their 'close' follows 'finish', once their bytes are handed to the
 * socket and their usage is settled).
 */
export class ResponsesInFlight {
  readonly #open = new WeakMap<
    Socket,
    { responses: Map<ServerResponse, IncomingMessage>; waiting: Array<() => void> }
  >();

  /** Counts a response from its request until it closes (finished or not). */
  track(req: IncomingMessage, res: ServerResponse): void {
    const { socket } = req;
    let entry = this.#open.get(socket);
    if (!entry) {
      entry = { responses: new Map(), waiting: [] };
      this.#open.set(socket, entry);
    }
    const { responses, waiting } = entry;
    responses.set(res, req);
    res.once('close', () => {
      responses.delete(res);
      if (responses.size === 0) for (const run of waiting.splice(0)) run();
    });
  }

  /**
   * Runs `then` once every response begun before now on the socket has closed, at once when
   * none is open. A socket that closes first runs it too (`then` sees it destroyed): a
   * response queued behind another one is never given the socket, so it may never close.
   */
  afterEarlierResponses(socket: Socket, then: () => void): void {
    const entry = this.#open.get(socket);
    if (!entry || entry.responses.size === 0) {
      then();
      return;
    }
    // On 'connect' and 'upgrade' Node detaches its own socket listeners, its 'drain' relay
    // to the response being written among them: a response larger than the socket's buffer
    // (16 KiB) would then wait for a 'drain' that never comes (measured: a 4 MiB answer
    // stalled after 16 KiB). Relay it while they finish.
    const relayDrain = () => {
      for (const res of entry.responses.keys()) if (res.writableNeedDrain) res.emit('drain');
    };
    let ran = false;
    const once = () => {
      if (ran) return;
      ran = true;
      socket.off('close', once);
      socket.off('drain', relayDrain);
      then();
    };
    entry.waiting.push(once);
    socket.once('close', once);
    socket.on('drain', relayDrain);
  }

  /**
   * What a request Node could not parse may be answered after. Its headers were never
   * complete when the earlier requests are ('after' them). When one of them is still being
   * read, the error is in its body and its answer will never finish: the refusal goes 'now'
   * if that answer has not begun, else the connection can only be 'cut'.
   */
  placeOfParseError(socket: Socket): 'now' | 'after' | 'cut' {
    const responses = this.#open.get(socket)?.responses;
    if (!responses || responses.size === 0) return 'now';
    if ([...responses.values()].every((req) => req.complete)) return 'after';
    return [...responses.keys()].some((res) => res.headersSent) ? 'cut' : 'now';
  }
}
