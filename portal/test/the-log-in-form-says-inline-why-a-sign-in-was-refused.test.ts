/**
 * The log-in and sign-up form, rendered: a refusal is said beside the form in words a
 * person can act on (a wrong password, the seconds a rate limit has left), and a sign-in
 * keeps the session's CSRF token for the mutations that follow.
 */
import './support/dom.ts';
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { screen, waitFor } from '@testing-library/react';
import { createElement } from 'react';
import { api as client, unwrap } from '../src/api/client.ts';
import { AuthPage } from '../src/pages/AuthPage.tsx';
import { ME } from '../src/session.tsx';
import { StubApi } from './support/api-stub.ts';
import { errorBody, key, SESSION } from './support/fixtures.ts';
import { renderPortal } from './support/render.tsx';

let close = () => {};
afterEach(() => close());

function renderAuth(api: StubApi) {
  api.install();
  const view = renderPortal(createElement(AuthPage));
  close = view.close;
  return view;
}

/** Types the email, moves on with Tab as a person would, types the password and presses Enter. */
async function logIn(user: ReturnType<typeof renderAuth>['user'], password: string) {
  await user.click(screen.getByLabelText(/^Email/));
  await user.keyboard('ada@example.com');
  await user.tab();
  assert.equal(document.activeElement, screen.getByLabelText(/^Password/));
  await user.keyboard(`${password}{Enter}`);
}

describe('the log-in form', () => {
  test('a wrong password is said inline; the email and password went as typed', async () => {
    const api = new StubApi().on('post', '/v1/auth/login', {
      status: 401,
      body: errorBody('unauthorized', 'Wrong email or password'),
    });
    const { user } = renderAuth(api);
    await logIn(user, 'not-the-password');
    const alert = await screen.findByRole('alert');
    assert.match(alert.textContent ?? '', /Not signed in/);
    assert.match(alert.textContent ?? '', /Wrong email or password\./);
    assert.deepEqual(
      api.sent.map(({ method, path, body }) => ({ method, path, body })),
      [
        {
          method: 'POST',
          path: '/v1/auth/login',
          body: { email: 'ada@example.com', password: 'not-the-password' },
        },
      ],
    );
  });

  test("a rate limit says the seconds left from the answer's Retry-After", async () => {
    // Five minutes' refusal: longer than the SDK waits, so it reaches the form at once.
    const api = new StubApi().on('post', '/v1/auth/login', {
      status: 429,
      headers: { 'Retry-After': '287' },
      body: errorBody('rate_limited', 'Too many failed log-ins'),
    });
    const { user } = renderAuth(api);
    await logIn(user, 'guess-number-six');
    const alert = await screen.findByRole('alert');
    assert.match(
      alert.textContent ?? '',
      /Too many attempts from your address\. Try again in 287 seconds\./,
    );
    assert.equal(api.requests('POST', '/v1/auth/login').length, 1);
  });

  test('a sign-in keeps the session and sends its CSRF token with every mutation after', async () => {
    const api = new StubApi()
      .on('post', '/v1/auth/login', { status: 200, body: SESSION })
      .on('post', '/v1/keys', {
        status: 201,
        body: {
          ...key('k1', ''),
          secret: 's',
          proxy_username: 'k1',
          proxy_password: 's',
          http_proxy_url: 'http://k1:s@127.0.0.1:8000',
          socks_proxy_url: 'socks5h://k1:s@127.0.0.1:1080',
          curl_example: '',
        },
      });
    const { user, queryClient } = renderAuth(api);
    await logIn(user, 'the-right-password');
    await waitFor(() => assert.deepEqual(queryClient.getQueryData(ME), SESSION));
    assert.equal(screen.queryByRole('alert'), null);
    await unwrap(client.POST('/v1/keys', { body: {} }));
    const [created] = api.requests('POST', '/v1/keys');
    assert.equal(created?.headers.get('X-CSRF-Token'), SESSION.csrf_token);
  });
});

describe('the sign-up form', () => {
  test('a short password is refused inline before anything is sent', async () => {
    const api = new StubApi().on('post', '/v1/auth/signup', {
      status: 409,
      body: errorBody('email_taken', 'An account with this email exists'),
    });
    const { user } = renderAuth(api);
    await user.click(screen.getByRole('button', { name: 'Create an account' }));
    assert.ok(screen.getByRole('heading', { name: 'Create your account' }));
    await user.type(screen.getByLabelText(/^Email/), 'ada@example.com');
    await user.type(screen.getByLabelText(/^Password/), 'short');
    assert.ok(screen.getByText('At least 10 characters'));
    assert.equal(api.sent.length, 0);
    await user.type(screen.getByLabelText(/^Password/), '-but-long-now{Enter}');
    assert.equal(screen.queryByText('At least 10 characters'), null);
    const alert = await screen.findByRole('alert');
    assert.match(alert.textContent ?? '', /Not signed up/);
    assert.match(alert.textContent ?? '', /already exists\. Log in instead\./);
    assert.deepEqual(api.requests('POST', '/v1/auth/signup')[0]?.body, {
      email: 'ada@example.com',
      password: 'short-but-long-now',
    });
  });
});
