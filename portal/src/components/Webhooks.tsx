import {
  Accordion,
  Alert,
  Badge,
  Button,
  Card,
  Group,
  Modal,
  MultiSelect,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { api, type Schemas, unwrap } from '../api/client.ts';
import { formatDate } from '../format.ts';
import { CopyField } from './CopyField.tsx';
import { RefusalAlert } from './RefusalAlert.tsx';

const WEBHOOKS = ['webhooks'] as const;
const EVENTS: Schemas['WebhookEventType'][] = [
  'balance.low',
  'balance.exhausted',
  'key.cap_reached',
  'topup.succeeded',
  'topup.failed',
];

function Deliveries({ id }: { id: string }) {
  const deliveries = useQuery({
    queryKey: [...WEBHOOKS, id, 'deliveries'],
    queryFn: () => unwrap(api.GET('/v1/webhooks/{id}/deliveries', { params: { path: { id } } })),
    // Follow a delivery under way closely; otherwise now and then.
    refetchInterval: (query) =>
      query.state.data?.items.some((delivery) => delivery.status === 'pending') ? 2_000 : 15_000,
  });
  const items = deliveries.data?.items ?? [];
  if (deliveries.isSuccess && items.length === 0) {
    return (
      <Text size="sm" c="dimmed">
        No deliveries yet.
      </Text>
    );
  }
  return (
    <div className="table-scroll">
      <Table miw={480} verticalSpacing={4}>
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Event</Table.Th>
            <Table.Th>Status</Table.Th>
            <Table.Th>Attempts</Table.Th>
            <Table.Th>Created</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {items.map((delivery) => (
            <Table.Tr key={delivery.id}>
              <Table.Td className="mono">{delivery.type}</Table.Td>
              <Table.Td>
                <Badge
                  color={
                    delivery.status === 'succeeded'
                      ? 'teal'
                      : delivery.status === 'failed'
                        ? 'red'
                        : 'yellow'
                  }
                >
                  {delivery.status}
                </Badge>
              </Table.Td>
              <Table.Td>
                <Text size="xs">
                  {delivery.attempts
                    .map(
                      (attempt) =>
                        `${attempt.status_code ?? attempt.error} (${attempt.duration_ms} ms)`,
                    )
                    .join(', ') || 'none yet'}
                </Text>
              </Table.Td>
              <Table.Td>
                <Text size="xs">{formatDate(delivery.created_at)}</Text>
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </div>
  );
}

/** Endpoints the account's billing events are POSTed to, each with its deliveries. */
export function Webhooks() {
  const queryClient = useQueryClient();
  const webhooks = useQuery({ queryKey: WEBHOOKS, queryFn: () => unwrap(api.GET('/v1/webhooks')) });
  const [adding, setAdding] = useState(false);
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState<string[]>(['balance.low', 'topup.succeeded']);
  const [secret, setSecret] = useState<string | null>(null);
  const refresh = () => queryClient.invalidateQueries({ queryKey: WEBHOOKS });
  const create = useMutation({
    mutationFn: (body: Schemas['CreateWebhookRequest']) =>
      unwrap(api.POST('/v1/webhooks', { body })),
    onSuccess: (created) => {
      setAdding(false);
      setSecret(created.secret);
      setUrl('');
      void refresh();
    },
  });
  const remove = useMutation({
    mutationFn: (id: string) =>
      unwrap(api.DELETE('/v1/webhooks/{id}', { params: { path: { id } } })),
    onSuccess: () => void refresh(),
  });
  const test = useMutation({
    mutationFn: (id: string) =>
      unwrap(api.POST('/v1/webhooks/{id}/test', { params: { path: { id } } })),
    onSuccess: () => void refresh(),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({ url: url.trim(), events: events as Schemas['WebhookEventType'][] });
  };
  const items = webhooks.data?.items ?? [];
  return (
    <Card withBorder>
      <Group justify="space-between" mb="sm">
        <Title order={3} size="h4">
          Webhooks
        </Title>
        <Button
          variant="light"
          onClick={() => {
            create.reset();
            setAdding(true);
          }}
        >
          Add endpoint
        </Button>
      </Group>
      {items.length === 0 && webhooks.isSuccess && (
        <Text size="sm" c="dimmed">
          Get low-balance, cap and payment events at your own HTTPS endpoint.
        </Text>
      )}
      <Accordion variant="separated">
        {items.map((hook) => (
          <Accordion.Item key={hook.id} value={hook.id}>
            <Accordion.Control>
              <Group gap="xs" wrap="nowrap">
                <Text size="sm" className="mono">
                  {hook.url}
                </Text>
                {hook.disabled && <Badge color="gray">Disabled</Badge>}
              </Group>
            </Accordion.Control>
            <Accordion.Panel>
              <Stack gap="sm">
                <Text size="xs" c="dimmed">
                  {hook.events.join(', ')}
                </Text>
                <Group gap="xs">
                  <Button size="xs" variant="default" onClick={() => test.mutate(hook.id)}>
                    Send test event
                  </Button>
                  <Button
                    size="xs"
                    color="red"
                    variant="light"
                    onClick={() => remove.mutate(hook.id)}
                  >
                    Delete
                  </Button>
                </Group>
                <Deliveries id={hook.id} />
              </Stack>
            </Accordion.Panel>
          </Accordion.Item>
        ))}
      </Accordion>
      <Modal opened={adding} onClose={() => setAdding(false)} title="Add webhook endpoint">
        <form onSubmit={submit}>
          <Stack>
            <RefusalAlert error={create.error} />
            <TextInput
              label="URL"
              placeholder="https://example.com/ipcola-events"
              required
              value={url}
              onChange={(event) => setUrl(event.currentTarget.value)}
              data-autofocus
            />
            <MultiSelect
              label="Events"
              data={EVENTS}
              value={events}
              onChange={setEvents}
              required
            />
            <Group justify="flex-end">
              <Button type="submit" loading={create.isPending}>
                Add endpoint
              </Button>
            </Group>
          </Stack>
        </form>
      </Modal>
      <Modal opened={secret !== null} onClose={() => setSecret(null)} title="Signing secret">
        <Stack>
          <Alert color="yellow">Shown once: verify IPCola-Signature with it.</Alert>
          {secret && <CopyField label="Signing secret" value={secret} />}
        </Stack>
      </Modal>
    </Card>
  );
}
