/**
 * A sticky identity: one session id, so one exit IP, for every request until `rotate()`
 * picks a new id (and with it a new exit). Its requests are never retried on another exit:
 * when the exit goes away the gateway answers `session_exit_gone`, thrown as
 * SessionExitGoneError, and the caller decides whether to rotate.
 */
import type { Dispatcher, RequestInit, Response } from 'undici';
import type { DispatcherOptions } from './dispatcher.ts';
import { newSessionId, type ProxyOptions } from './targeting.ts';

export type SessionOptions = Omit<ProxyOptions, 'session'> & {
  /** The first session id; default a random one. */
  id?: string;
};

export interface ProxySession {
  /** The current session id (the `session` parameter of the username). */
  readonly id: string;
  /** The options every request of this session uses, with the current id. */
  readonly options: ProxyOptions;
  fetch(url: string | URL, init?: RequestInit): Promise<Response>;
  proxyUrl(): string;
  socksUrl(): string;
  /** The session's dispatcher, the same one until rotate(). */
  dispatcher(): Dispatcher;
  /** A new session id, so the next request gets a new exit; answers the new id. */
  rotate(): string;
  /** Closes the session's connections to the gateway. */
  close(): Promise<void>;
}

export interface SessionParts {
  check(options: ProxyOptions): void;
  proxyUrl(options: ProxyOptions): string;
  socksUrl(options: ProxyOptions): string;
  newDispatcher(options: ProxyOptions, dispatcherOptions?: DispatcherOptions): Dispatcher;
  fetch(dispatcher: Dispatcher, url: string | URL, init: RequestInit): Promise<Response>;
}

export function createSession(
  parts: SessionParts,
  sessionOptions: SessionOptions = {},
  dispatcherOptions: DispatcherOptions = {},
): ProxySession {
  const { id: firstId, ...targeting } = sessionOptions;
  let options: ProxyOptions = { ...targeting, session: firstId ?? newSessionId() };
  // Refused here, before the first request, like every other helper.
  parts.check(options);
  let current: Dispatcher | undefined;
  const dispatcher = () => {
    current ??= parts.newDispatcher(options, dispatcherOptions);
    return current;
  };
  return {
    get id() {
      return options.session as string;
    },
    get options() {
      return { ...options };
    },
    fetch: (url, init = {}) => parts.fetch(dispatcher(), url, init),
    proxyUrl: () => parts.proxyUrl(options),
    socksUrl: () => parts.socksUrl(options),
    dispatcher,
    rotate() {
      options = { ...options, session: newSessionId() };
      // The old dispatcher's kept-alive connections belong to the old exit.
      const old = current;
      current = undefined;
      void old?.close().catch(() => {});
      return options.session as string;
    },
    async close() {
      const old = current;
      current = undefined;
      await old?.close();
    },
  };
}
