/**
 * What every resource namespace calls through: the typed openapi-fetch client with the
 * bearer key (or, in the portal, the session cookie), an Idempotency-Key on every mutation
 * (made once per call, before any attempt, so retries carry the same one) and the retrying
 * transport per call. Nothing here is Node's own: it runs in browsers too.
 */
import type { paths } from '@ipcola/openapi';
import type { Client } from 'openapi-fetch';
import * as openapiFetch from 'openapi-fetch';
/** What the requester needs of the client's configuration. */
export interface RequesterConfig {
  readonly apiUrl: string;
  /** Sent as `Authorization: Bearer`; none for a cookie session (the portal). */
  readonly apiKey?: string | undefined;
  readonly maxRetries: number;
  readonly timeout: number;
  readonly fetch: typeof fetch;
  /** fetch's `credentials` (the portal: `same-origin`, for its session cookie). */
  readonly credentials?: RequestInit['credentials'] | undefined;
}

import { transport } from './transport.ts';
import { SDK_VERSION } from './version.ts';

export interface RequestOptions {
  /** Retries after the first attempt; default the client's `maxRetries`. */
  maxRetries?: number | undefined;
  /** Milliseconds per attempt; default the client's `timeout`. */
  timeout?: number | undefined;
  signal?: AbortSignal | undefined;
  /** For mutations: the key to send instead of a new random one (to retry across processes). */
  idempotencyKey?: string | undefined;
  headers?: Record<string, string> | undefined;
}

/** Spread into an openapi-fetch call. */
export interface CallInit {
  headers: Record<string, string>;
  fetch: typeof fetch;
}

type CreateClient = typeof openapiFetch.default;
/**
 * openapi-fetch's CommonJS build sets `exports.default` beside `__esModule`; this SDK's
 * CommonJS build, like Node, takes the whole exports object as the default import.
 */
const createClient: CreateClient =
  typeof openapiFetch.default === 'function'
    ? openapiFetch.default
    : (openapiFetch.default as unknown as { default: CreateClient }).default;

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export class Requester {
  /** The raw typed client: every path of the API document, retried, keyed and authenticated. */
  readonly api: Client<paths>;
  readonly #config: RequesterConfig;

  constructor(config: RequesterConfig) {
    this.#config = config;
    const node = globalThis.process?.versions?.node;
    this.api = createClient<paths>({
      baseUrl: config.apiUrl,
      headers: {
        ...(config.apiKey === undefined ? {} : { Authorization: `Bearer ${config.apiKey}` }),
        // A browser sends its own (and refuses to be told).
        ...(node ? { 'User-Agent': `ipcola-sdk/${SDK_VERSION} node/${node}` } : {}),
      },
      ...(config.credentials ? { credentials: config.credentials } : {}),
      fetch: transport(config),
    });
    // Before the transport, so every attempt of one call carries the same key.
    this.api.use({
      onRequest({ request }) {
        if (MUTATIONS.has(request.method) && !request.headers.has('idempotency-key')) {
          request.headers.set('Idempotency-Key', newIdempotencyKey());
        }
        return request;
      },
    });
  }

  init(options: RequestOptions = {}, answerStatuses?: readonly number[]): CallInit {
    return {
      headers: {
        ...(options.idempotencyKey === undefined
          ? {}
          : { 'Idempotency-Key': options.idempotencyKey }),
        ...options.headers,
      },
      fetch: transport({
        fetch: this.#config.fetch,
        maxRetries: options.maxRetries ?? this.#config.maxRetries,
        timeout: options.timeout ?? this.#config.timeout,
        signal: options.signal,
        answerStatuses,
      }),
    };
  }

  /**
   * Runs one call and answers its data. The transport already threw for every refusal,
   * so a result here is a success (a 204's data is undefined).
   */
  async call<T>(
    options: RequestOptions | undefined,
    run: (init: CallInit) => Promise<{ data?: T }>,
    answerStatuses?: readonly number[],
  ): Promise<T> {
    const { data } = await run(this.init(options, answerStatuses));
    return data as T;
  }
}

function newIdempotencyKey(): string {
  return `ipcola-sdk-${globalThis.crypto.randomUUID()}`;
}
