import type { Requester, RequestOptions } from '../requester.ts';

/** Health, readiness, metrics and the API document: the server's own operations. */
export class Operations {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  health(options?: RequestOptions) {
    return this.#r.call(options, (init) => this.#r.api.GET('/healthz', { ...init }));
  }

  /** The checks, also when the server is not ready (answered 503, not thrown, not retried). */
  readiness(options?: RequestOptions) {
    return this.#r.call(
      { maxRetries: 0, ...options },
      (init) => this.#r.api.GET('/readyz', { ...init }),
      [503],
    );
  }

  /** The OpenAPI document (YAML) this SDK's types come from. */
  openapiDocument(options?: RequestOptions): Promise<string> {
    return this.#r.call(options, (init) =>
      this.#r.api.GET('/openapi.yaml', { parseAs: 'text', ...init }),
    );
  }

  /** The API reference page (HTML). */
  docs(options?: RequestOptions): Promise<string> {
    return this.#r.call(options, (init) => this.#r.api.GET('/docs', { parseAs: 'text', ...init }));
  }

  /** Prometheus metrics, for callers the server allows. */
  metrics(options?: RequestOptions): Promise<string> {
    return this.#r.call(options, (init) =>
      this.#r.api.GET('/metrics', { parseAs: 'text', ...init }),
    );
  }
}
