import { Alert, Stack, Tabs } from '@mantine/core';
import type { Schemas } from '../api/client.ts';
import { CopyField } from './CopyField.tsx';
import { connectionSnippets } from './key-settings.ts';

/** A new or rotated key's secret, shown this once, with ready ways to use it. */
export function SecretReveal({ created }: { created: Schemas['KeyCreated'] }) {
  const snippets = connectionSnippets(created, 'https://example.com', globalThis.location.origin);
  return (
    <Stack>
      <Alert color="yellow" title="Copy the secret now">
        It is shown only once. Only a hash is kept; rotate the key if it is lost.
      </Alert>
      <CopyField label="Key id" value={created.id} />
      <CopyField label="Secret" value={created.secret} />
      <CopyField label="curl line" value={snippets.curl} />
      <CopyField label="HTTP proxy URL" value={created.http_proxy_url} />
      <CopyField label="SOCKS5 proxy URL" value={created.socks_proxy_url} />
      {created.scopes.includes('api') && (
        <CopyField label="API bearer token" value={`${created.id}.${created.secret}`} />
      )}
      <Tabs defaultValue="sdk">
        <Tabs.List>
          <Tabs.Tab value="sdk">IPCola SDK</Tabs.Tab>
          <Tabs.Tab value="node">Node.js</Tabs.Tab>
          <Tabs.Tab value="python">Python</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="sdk" pt="xs">
          <CopyField label="SDK snippet" value={snippets.sdk} block />
        </Tabs.Panel>
        <Tabs.Panel value="node" pt="xs">
          <CopyField label="Node.js snippet" value={snippets.node} block />
        </Tabs.Panel>
        <Tabs.Panel value="python" pt="xs">
          <CopyField label="Python snippet" value={snippets.python} block />
        </Tabs.Panel>
      </Tabs>
    </Stack>
  );
}
