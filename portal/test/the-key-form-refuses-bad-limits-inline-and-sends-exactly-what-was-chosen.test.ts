/**
 * The keys page's create form, rendered: a bad country is named beside its field and
 * nothing is sent, a connection limit under 1 is raised to 1; the API's refusal of an address range is shown in the form;
 * what is sent is exactly the choice (with the session's CSRF token); the secret is shown
 * once, and gone when its window closes.
 */
import './support/dom.ts';
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { components } from '@ipcola/openapi';
import { screen, waitFor, within } from '@testing-library/react';
import { createElement } from 'react';
import { setCsrfToken } from '../src/api/client.ts';
import KeysPage from '../src/pages/KeysPage.tsx';
import { StubApi } from './support/api-stub.ts';
import { errorBody, key } from './support/fixtures.ts';
import { renderPortal } from './support/render.tsx';

type Schemas = components['schemas'];

const SECRET = 'Zk3tq9WmY1vR8pXo2LcN7bHd5sJa4eGu6iFy0QwErTz';
const CREATED: Schemas['KeyCreated'] = {
  id: 'k7f2',
  name: 'scraper',
  scopes: ['proxy', 'api'],
  created_at: '2026-12-06T01:00:00Z',
  secret: SECRET,
  proxy_username: 'k7f2',
  proxy_password: SECRET,
  http_proxy_url: `http://k7f2:${SECRET}@127.0.0.1:8000`,
  socks_proxy_url: `socks5h://k7f2:${SECRET}@127.0.0.1:1080`,
  curl_example: `curl -x http://k7f2-country-us:${SECRET}@127.0.0.1:8000 https://example.com`,
};

describe('the key form', () => {
  let keys: Schemas['Key'][] = [];
  const api = new StubApi()
    .on('get', '/v1/keys', () => ({ status: 200, body: { items: keys, next_cursor: null } }))
    .on('post', '/v1/keys', ({ body }) => {
      // As the server: a range that is not an address or CIDR refuses the whole key.
      const allowlist = (body as Schemas['UpdateKeyRequest']).client_allowlist ?? [];
      const bad = allowlist.find((cidr) => !/^[\d.]+\/\d+$/.test(cidr));
      if (bad !== undefined) {
        return {
          status: 400,
          body: errorBody(
            'invalid_request',
            `client_allowlist: ${JSON.stringify(bad)} is not an address or CIDR`,
          ),
        };
      }
      keys = [{ ...key(CREATED.id, CREATED.name), scopes: CREATED.scopes }];
      return { status: 201, body: CREATED };
    })
    .install();
  setCsrfToken('csrf-of-this-session');
  const view = renderPortal(createElement(KeysPage), { path: '/keys' });
  const { user } = view;
  after(() => view.close());

  const dialog = () => screen.getByRole('dialog', { name: 'Create key' });
  const field = (label: RegExp) => within(dialog()).getByLabelText(label, { selector: 'input' });

  test('opens from the page with the name field focused', async () => {
    assert.ok(await screen.findByText('No keys yet'));
    await user.click(screen.getByRole('button', { name: 'Create key' }));
    await waitFor(() => assert.equal(document.activeElement, field(/^Name/)));
  });

  test('a bad country is named beside its field, a limit under 1 is raised to 1; nothing is sent', async () => {
    await user.keyboard('  scraper ');
    await user.click(field(/Also an API key/));
    await user.type(field(/^Monthly cap/), '2.5');
    await user.type(field(/^Concurrent connections/), '0');
    await user.type(field(/^Allowed countries/), 'DE{Enter}usa{Enter}');
    await user.click(within(dialog()).getByRole('button', { name: 'Create key' }));
    assert.ok(within(dialog()).getByText('usa is not a two-letter country code'));
    // The connection limit's field holds its minimum once left, so 0 never reaches a request.
    assert.equal((field(/^Concurrent connections/) as HTMLInputElement).value, '1');
    assert.deepEqual(api.requests('POST', '/v1/keys'), []);
  });

  test("the API's refusal of an address range is shown in the form, which stays open", async () => {
    // Backspace in the empty tag field takes the last tag off, as in any tag input.
    await user.click(field(/^Allowed countries/));
    await user.keyboard('{Backspace}');
    await user.clear(field(/^Concurrent connections/));
    await user.type(field(/^Concurrent connections/), '20');
    await user.type(field(/^IP allow-list/), '203.0.113.0/24{Enter}office{Enter}');
    assert.equal(within(dialog()).queryByText(/is not a two-letter country code/), null);
    // Enter in the name field submits the form, as in any form.
    await user.click(field(/^Name/));
    await user.keyboard('{Enter}');
    const alert = await within(dialog()).findByRole('alert');
    assert.match(alert.textContent ?? '', /Not saved/);
    assert.match(alert.textContent ?? '', /client_allowlist: "office" is not an address or CIDR/);
    assert.equal(api.requests('POST', '/v1/keys').length, 1);
  });

  test('the request is exactly the choice, with the CSRF token, and the secret is shown once', async () => {
    await user.click(field(/^IP allow-list/));
    await user.keyboard('{Backspace}');
    await user.click(within(dialog()).getByRole('button', { name: 'Create key' }));
    const reveal = await screen.findByRole('dialog', { name: 'Your key' });
    const [, created] = api.requests('POST', '/v1/keys');
    assert.deepEqual(created?.body, {
      name: 'scraper',
      scopes: ['proxy', 'api'],
      monthly_byte_cap: 2_500_000_000,
      max_concurrency: 20,
      allowed_countries: ['de'],
      client_allowlist: ['203.0.113.0/24'],
      passwordless_cidrs: [],
      default_targeting: '',
    });
    assert.equal(created?.headers.get('X-CSRF-Token'), 'csrf-of-this-session');
    assert.equal(created?.headers.get('Content-Type'), 'application/json');
    assert.match(created?.headers.get('Idempotency-Key') ?? '', /.{16,}/);
    assert.equal(screen.queryByRole('dialog', { name: 'Create key' }), null);
    assert.equal(within(reveal).getByTestId('copy-Secret').textContent, SECRET);
    assert.equal(
      within(reveal).getByTestId('copy-curl line').textContent,
      `curl -x ${CREATED.http_proxy_url} https://example.com`,
    );
    assert.equal(
      within(reveal).getByTestId('copy-API bearer token').textContent,
      `${CREATED.id}.${SECRET}`,
    );
  });

  test('once closed, the secret is nowhere on the page and the new key is listed', async () => {
    await user.keyboard('{Escape}');
    await waitFor(() => assert.equal(screen.queryByRole('dialog', { name: 'Your key' }), null));
    const row = await screen.findByTestId(`key-${CREATED.id}`);
    assert.match(row.textContent ?? '', /scraper/);
    assert.ok(!document.body.innerHTML.includes(SECRET));
    assert.deepEqual(api.unanswered, []);
  });
});
