import {
  Badge,
  Button,
  Card,
  CopyButton,
  Group,
  NumberInput,
  PasswordInput,
  SegmentedControl,
  Select,
  SimpleGrid,
  Stack,
  Text,
  Textarea,
} from '@mantine/core';
import { useMutation, useQuery } from '@tanstack/react-query';
import { useEffect, useMemo, useState } from 'react';
import { api, type Schemas, unwrap } from '../api/client.ts';
import { CopyField } from '../components/CopyField.tsx';
import { PageHeader } from '../components/PageHeader.tsx';
import {
  onlineExits,
  type ProxyChoice,
  proxyListRequest,
  proxyUsername,
} from '../components/proxy-choice.ts';
import { RefusalAlert } from '../components/RefusalAlert.tsx';
import { useKeys } from './KeysPage.tsx';

const TTLS = [
  { value: '60', label: '1 minute' },
  { value: '600', label: '10 minutes' },
  { value: '1800', label: '30 minutes' },
  { value: '3600', label: '1 hour' },
  { value: '86400', label: '24 hours' },
];

const FORMATS = [
  { value: 'hostport', label: 'user:pass@host:port' },
  { value: 'url', label: 'http://user:pass@host:port' },
  { value: 'socks_url', label: 'socks5h://user:pass@host:port' },
  { value: 'curl', label: 'curl -x lines' },
];

const TYPES = [
  { value: '', label: 'Any type' },
  { value: 'residential', label: 'Residential' },
  { value: 'datacenter', label: 'Datacenter' },
  { value: 'mobile', label: 'Mobile' },
];

export function useRegions() {
  return useQuery({
    queryKey: ['regions'],
    queryFn: () => unwrap(api.GET('/v1/regions', { params: { query: { limit: 500 } } })),
    // The live count of online exits follows nodes coming and going.
    refetchInterval: 10_000,
  });
}

export default function ProxyBuilderPage() {
  const keys = useKeys();
  const regions = useRegions();
  const [choice, setChoice] = useState<ProxyChoice>({
    keyId: '',
    country: '',
    city: '',
    type: '',
    sticky: true,
    ttlSeconds: 600,
    format: 'hostport',
    count: 10,
  });
  const [secret, setSecret] = useState('');
  const set = <K extends keyof ProxyChoice>(name: K, value: ProxyChoice[K]) =>
    setChoice((current) => ({ ...current, [name]: value }));
  const firstKey = keys.data?.items[0]?.id;
  useEffect(() => {
    if (firstKey)
      setChoice((current) => (current.keyId ? current : { ...current, keyId: firstKey }));
  }, [firstKey]);

  const items = regions.data?.items ?? [];
  const countries = useMemo(
    () => [...new Set(items.map((region) => region.country))].sort(),
    [items],
  );
  const cities = useMemo(
    () =>
      [
        ...new Set(
          items
            .filter((region) => region.country === choice.country && region.city)
            .map((region) => region.city as string),
        ),
      ].sort(),
    [items, choice.country],
  );
  const online = onlineExits(items, choice);
  const list = useMutation({
    mutationFn: (body: Schemas['CreateProxyListRequest']) =>
      unwrap(api.POST('/v1/proxy-lists', { body })),
  });
  const text = list.data?.proxies.join('\n') ?? '';
  const download = () => {
    const url = URL.createObjectURL(new Blob([`${text}\n`], { type: 'text/plain' }));
    const anchor = document.createElement('a');
    anchor.href = url;
    anchor.download = `ipcola-proxies-${choice.country || 'any'}.txt`;
    anchor.click();
    URL.revokeObjectURL(url);
  };

  return (
    <>
      <PageHeader
        title="Proxy builder"
        description="Pick where your traffic should leave from; copy the credentials or a list for your scraper."
      />
      <SimpleGrid cols={{ base: 1, md: 2 }} spacing="lg">
        <Card withBorder>
          <Stack>
            <Select
              label="Key"
              data={(keys.data?.items ?? []).map((key) => ({
                value: key.id,
                label: key.name ? `${key.name} (${key.id})` : key.id,
              }))}
              value={choice.keyId || null}
              onChange={(value) => set('keyId', value ?? '')}
              placeholder={keys.isSuccess ? 'Create a key first' : 'Loading…'}
            />
            <SimpleGrid cols={{ base: 1, xs: 2 }}>
              <Select
                label="Country"
                data={[
                  { value: '', label: 'Any country' },
                  ...countries.map((c) => ({ value: c, label: c.toUpperCase() })),
                ]}
                value={choice.country}
                onChange={(value) =>
                  setChoice((current) => ({ ...current, country: value ?? '', city: '' }))
                }
                searchable
              />
              <Select
                label="City"
                data={[
                  { value: '', label: 'Any city' },
                  ...cities.map((c) => ({ value: c, label: c.replaceAll('_', ' ') })),
                ]}
                value={choice.city}
                onChange={(value) => set('city', value ?? '')}
                disabled={!choice.country}
              />
              <Select
                label="Exit type"
                data={TYPES}
                value={choice.type}
                onChange={(value) => set('type', (value ?? '') as ProxyChoice['type'])}
              />
              <Select
                label="Protocol and format"
                data={FORMATS}
                value={choice.format}
                onChange={(value) => set('format', (value ?? 'hostport') as ProxyChoice['format'])}
              />
            </SimpleGrid>
            <div>
              <Text size="sm" fw={500} mb={4} id="rotation-label">
                Rotation
              </Text>
              <SegmentedControl
                aria-labelledby="rotation-label"
                fullWidth
                data={[
                  { value: 'sticky', label: 'Sticky session' },
                  { value: 'rotating', label: 'Rotating' },
                ]}
                value={choice.sticky ? 'sticky' : 'rotating'}
                onChange={(value) => set('sticky', value === 'sticky')}
              />
            </div>
            <SimpleGrid cols={{ base: 1, xs: 2 }}>
              <Select
                label="Session life"
                data={TTLS}
                value={String(choice.ttlSeconds)}
                onChange={(value) => set('ttlSeconds', Number(value ?? 600))}
                disabled={!choice.sticky}
              />
              <NumberInput
                label="Lines"
                min={1}
                max={1000}
                allowDecimal={false}
                value={choice.count}
                onChange={(value) => set('count', Math.min(1000, Math.max(1, Number(value) || 1)))}
              />
            </SimpleGrid>
            <PasswordInput
              label="Key secret (optional)"
              description="Printed into each line; without it the lines say SECRET. Never stored."
              value={secret}
              onChange={(event) => setSecret(event.currentTarget.value)}
            />
          </Stack>
        </Card>
        <Stack>
          <Card withBorder>
            <Stack gap="sm">
              <Group justify="space-between">
                <Text fw={600}>Credentials</Text>
                <Badge
                  color={online > 0 ? 'teal' : 'red'}
                  size="lg"
                  aria-live="polite"
                  data-testid="online-exits"
                >
                  {online} exit{online === 1 ? '' : 's'} online
                </Badge>
              </Group>
              <CopyField label="Username" value={proxyUsername(choice, 'job1')} />
              <Text size="xs" c="dimmed">
                The password is the key&apos;s secret. Change the session name (job1) for a new exit
                IP; keep it for the same one.
              </Text>
              <Button
                onClick={() => list.mutate(proxyListRequest(choice, secret))}
                loading={list.isPending}
                disabled={!choice.keyId}
              >
                Generate {choice.count} line{choice.count === 1 ? '' : 's'}
              </Button>
              <RefusalAlert error={list.error} />
            </Stack>
          </Card>
          {list.data && (
            <Card withBorder>
              <Stack gap="sm">
                <Textarea
                  label="Proxy list"
                  readOnly
                  autosize
                  minRows={4}
                  maxRows={12}
                  value={text}
                  classNames={{ input: 'mono' }}
                />
                <Group>
                  <CopyButton value={text}>
                    {({ copied, copy }) => (
                      <Button onClick={copy} variant={copied ? 'outline' : 'filled'}>
                        {copied ? 'Copied' : 'Copy all lines'}
                      </Button>
                    )}
                  </CopyButton>
                  <Button variant="light" onClick={download}>
                    Download .txt
                  </Button>
                </Group>
              </Stack>
            </Card>
          )}
        </Stack>
      </SimpleGrid>
    </>
  );
}
