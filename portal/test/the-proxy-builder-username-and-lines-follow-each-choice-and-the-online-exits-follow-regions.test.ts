/**
 * The proxy builder, rendered: each choice of country, city, type, rotation and session
 * life changes the username a scraper uses, the count of online exits follows what
 * GET /v1/regions answers, and the lines asked for are exactly the choice.
 */
import './support/dom.ts';
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { components } from '@ipcola/openapi';
import { screen, waitFor } from '@testing-library/react';
import { createElement } from 'react';
import ProxyBuilderPage from '../src/pages/ProxyBuilderPage.tsx';
import { StubApi } from './support/api-stub.ts';
import { errorBody, key } from './support/fixtures.ts';
import { renderPortal } from './support/render.tsx';

type Schemas = components['schemas'];

function region(
  country: string,
  city: string | null,
  type: Schemas['ExitType'],
  exits: number,
): Schemas['Region'] {
  return {
    country,
    city,
    type,
    exits,
    healthy: exits,
    asns: [{ asn: 64500, organization: 'Example Net', exits }],
  };
}

describe('the proxy builder', () => {
  let regions = [
    region('us', 'new_york', 'residential', 3),
    region('us', null, 'datacenter', 2),
    region('de', 'berlin', 'residential', 4),
    region('de', 'munich', 'mobile', 1),
  ];
  const api = new StubApi()
    .on('get', '/v1/keys', {
      status: 200,
      body: { items: [key('k1', 'scraper'), key('k2', '')], next_cursor: null },
    })
    .on('get', '/v1/regions', () => ({
      status: 200,
      body: { items: regions, data: regions, next_cursor: null },
    }))
    .on('post', '/v1/proxy-lists', ({ body }) => {
      const request = body as Schemas['CreateProxyListRequest'];
      if (request.type === 'mobile') {
        return { status: 400, body: errorBody('invalid_request', 'type: no mobile exits here') };
      }
      return {
        status: 200,
        body: {
          key_id: 'k1',
          format: request.format,
          sticky: request.sticky,
          password_included: request.secret !== undefined,
          proxies: Array.from(
            { length: request.count },
            (_, i) =>
              `http://k1-country-de-city-berlin-type-residential-session-s${i}-ttl-1h:${request.secret}@127.0.0.1:8000`,
          ),
        },
      };
    })
    .install();
  const view = renderPortal(createElement(ProxyBuilderPage), { path: '/proxies' });
  const { user } = view;
  after(() => view.close());

  const username = () => screen.getByTestId('copy-Username').textContent;
  const online = () => screen.getByTestId('online-exits').textContent;
  const input = (label: RegExp) => screen.getByLabelText(label, { selector: 'input' });

  /** Opens a select with the keyboard and picks the option whose label is typed. */
  async function choose(label: RegExp, option: string) {
    await user.click(input(label));
    await user.click(await screen.findByRole('option', { name: option }));
    await waitFor(() => assert.equal((input(label) as HTMLInputElement).value, option));
  }

  test('the first key is chosen and every online exit counts', async () => {
    await waitFor(() => assert.equal(username(), 'k1-session-job1-ttl-10m'));
    await waitFor(() => assert.equal(online(), '10 exits online'));
    assert.equal(api.requests('GET', '/v1/regions')[0]?.query.get('limit'), '500');
  });

  test('a country, then a city and a type narrow the username and the count', async () => {
    // Searchable: typing over "Any country" filters the list, arrows move, Enter picks.
    await user.tripleClick(input(/^Country/));
    await user.keyboard('de{ArrowDown}{Enter}');
    await waitFor(() => assert.equal(username(), 'k1-country-de-session-job1-ttl-10m'));
    assert.equal(online(), '5 exits online');
    await choose(/^City/, 'berlin');
    assert.equal(username(), 'k1-country-de-city-berlin-session-job1-ttl-10m');
    assert.equal(online(), '4 exits online');
    await choose(/^Exit type/, 'Datacenter');
    assert.equal(username(), 'k1-country-de-city-berlin-type-datacenter-session-job1-ttl-10m');
    assert.equal(online(), '0 exits online');
    await choose(/^Exit type/, 'Residential');
    assert.equal(online(), '4 exits online');
  });

  test('rotating drops the session and its life; sticky again takes the life chosen', async () => {
    await user.click(screen.getByRole('radio', { name: 'Rotating' }));
    assert.equal(username(), 'k1-country-de-city-berlin-type-residential');
    assert.equal((input(/^Session life/) as HTMLInputElement).disabled, true);
    await user.click(screen.getByRole('radio', { name: 'Sticky session' }));
    await choose(/^Session life/, '1 hour');
    assert.equal(username(), 'k1-country-de-city-berlin-type-residential-session-job1-ttl-1h');
  });

  test('the online count follows the next answer of /v1/regions', async () => {
    regions = [region('de', 'berlin', 'residential', 1), region('us', null, 'datacenter', 2)];
    // What the ten-second poll does, asked for now rather than waited for.
    await view.queryClient.refetchQueries({ queryKey: ['regions'] });
    await waitFor(() => assert.equal(online(), '1 exit online'));
  });

  test('the lines asked for are exactly the choice, and are shown to copy', async () => {
    await choose(/^Protocol and format/, 'http://user:pass@host:port');
    // Emptied, the field holds 1 at once; typing over the selected number replaces it.
    await user.tripleClick(input(/^Lines/));
    await user.keyboard('3');
    await user.type(input(/^Key secret/), 'S3CRET');
    await user.click(screen.getByRole('button', { name: 'Generate 3 lines' }));
    const list = (await screen.findByLabelText('Proxy list')) as HTMLTextAreaElement;
    assert.deepEqual(api.requests('POST', '/v1/proxy-lists')[0]?.body, {
      key_id: 'k1',
      count: 3,
      sticky: true,
      format: 'url',
      secret: 'S3CRET',
      country: 'de',
      city: 'berlin',
      type: 'residential',
      ttl_seconds: 3600,
    });
    assert.equal(list.value.split('\n').length, 3);
    assert.match(list.value, /^http:\/\/k1-.*-session-s0-ttl-1h:S3CRET@127\.0\.0\.1:8000\n/);
    assert.ok(screen.getByRole('button', { name: 'Copy all lines' }));
  });

  test("the API's refusal of a list is said beside the button", async () => {
    await choose(/^Exit type/, 'Mobile');
    await user.click(screen.getByRole('button', { name: 'Generate 3 lines' }));
    const alert = await screen.findByRole('alert');
    assert.match(alert.textContent ?? '', /type: no mobile exits here/);
    assert.deepEqual(api.unanswered, []);
  });
});
