/**
 * The API as a component test answers it: `globalThis.fetch` replaced by a recorder that
 * answers from fixtures typed by the OpenAPI document (`@ipcola/openapi`'s `paths`), so a
 * fixture that drifts from the schema fails `tsc`. The portal's own client, middleware and
 * the SDK's transport run unchanged in front of it.
 */
import type { paths } from '@ipcola/openapi';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

type JsonOf<R> = R extends { content: { 'application/json': infer Body } } ? Body : undefined;

/** One answer the document allows for the operation: its status and that status's body. */
export type Answer<P extends keyof paths, M extends Method> = paths[P][M] extends {
  responses: infer Responses;
}
  ? {
      [S in keyof Responses]: {
        status: S;
        body: JsonOf<Responses[S]>;
        headers?: Record<string, string>;
      };
    }[keyof Responses]
  : never;

export interface Sent {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Headers;
  body: unknown;
}

interface Route {
  method: string;
  pattern: RegExp;
  answer(request: Sent): { status: PropertyKey; body: unknown; headers?: Record<string, string> };
}

function patternOf(path: string): RegExp {
  const escaped = path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+');
  return new RegExp(`^${escaped}$`);
}

export class StubApi {
  readonly sent: Sent[] = [];
  readonly unanswered: string[] = [];
  #routes: Route[] = [];

  /** Answers METHOD path (the document's template, `/v1/keys/{id}`) with what `answer` gives. */
  on<P extends keyof paths, M extends Method & keyof paths[P]>(
    method: M,
    path: P,
    answer: NoInfer<Answer<P, M> | ((request: Sent) => Answer<P, M>)>,
  ): this {
    this.#routes.unshift({
      method: method.toUpperCase(),
      pattern: patternOf(path),
      answer: (request) =>
        (typeof answer === 'function' ? answer(request) : answer) as ReturnType<Route['answer']>,
    });
    return this;
  }

  /** The requests sent to METHOD path so far, oldest first. */
  requests(method: string, path: string): Sent[] {
    return this.sent.filter((request) => request.method === method && request.path === path);
  }

  readonly fetch: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const text = await request.text();
    const sent: Sent = {
      method: request.method,
      path: url.pathname,
      query: url.searchParams,
      headers: request.headers,
      body: text ? JSON.parse(text) : undefined,
    };
    this.sent.push(sent);
    const route = this.#routes.find(
      (candidate) => candidate.method === sent.method && candidate.pattern.test(sent.path),
    );
    if (!route) {
      this.unanswered.push(`${sent.method} ${sent.path}`);
      return Response.json(
        { error: { code: 'not_found', message: `No fixture for ${sent.method} ${sent.path}` } },
        { status: 404 },
      );
    }
    const { status, body, headers } = route.answer(sent);
    return body === undefined
      ? new Response(null, { status: Number(status), headers })
      : Response.json(body, { status: Number(status), headers });
  };

  install(): this {
    globalThis.fetch = this.fetch;
    return this;
  }
}
