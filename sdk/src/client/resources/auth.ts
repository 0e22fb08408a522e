import type { Requester, RequestOptions } from '../requester.ts';
import { snakeKeys } from '../snake-keys.ts';
import type { Input, Schemas } from '../types.ts';

/**
 * The portal's sign-up, sign-in and sign-out. They start cookie sessions, which this client
 * does not keep (it authenticates with its key); they are here so every operation is.
 */
export class Auth {
  readonly #r: Requester;
  constructor(requester: Requester) {
    this.#r = requester;
  }

  signup(body: Input<Schemas['SignupRequest']>, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/auth/signup', {
        body: snakeKeys<Schemas['SignupRequest']>(body),
        ...init,
      }),
    );
  }

  login(body: Input<Schemas['LoginRequest']>, options?: RequestOptions) {
    return this.#r.call(options, (init) =>
      this.#r.api.POST('/v1/auth/login', {
        body: snakeKeys<Schemas['LoginRequest']>(body),
        ...init,
      }),
    );
  }

  async logout(options?: RequestOptions): Promise<void> {
    await this.#r.call(options, (init) => this.#r.api.POST('/v1/auth/logout', { ...init }));
  }
}
