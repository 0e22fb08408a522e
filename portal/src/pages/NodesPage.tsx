import {
  Alert,
  Anchor,
  Badge,
  Button,
  Card,
  Group,
  Loader,
  Modal,
  Select,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, lazy, Suspense, useEffect, useState } from 'react';
import { useSearchParams } from 'react-router';
import { api, type Schemas, unwrap } from '../api/client.ts';
import { CopyField } from '../components/CopyField.tsx';
import { PageHeader } from '../components/PageHeader.tsx';
import { Payouts } from '../components/Payouts.tsx';
import { RefusalAlert } from '../components/RefusalAlert.tsx';
import { formatBytes, formatMoney } from '../format.ts';

const BytesChart = lazy(() => import('../components/BytesChart.tsx'));
const NODES = ['nodes'] as const;

type AgentNode = Schemas['AgentNodeCreated'];

function Earnings({ node }: { node: Schemas['Node'] }) {
  const earnings = useQuery({
    queryKey: [...NODES, node.id, 'earnings'],
    queryFn: () =>
      unwrap(api.GET('/v1/nodes/{id}/earnings', { params: { path: { id: node.id } } })),
  });
  if (!earnings.data) return <Loader aria-label="Loading earnings" />;
  const { days, total } = earnings.data;
  const currency = total.earnings.currency;
  return (
    <Stack gap="xs">
      <Text size="sm">
        Last 30 days: <b>{formatMoney(total.earnings)}</b> for {formatBytes(total.bytes)} carried
      </Text>
      <Suspense fallback={<Loader aria-label="Loading chart" />}>
        <BytesChart
          label={`Daily earnings of ${node.name || node.id}`}
          times={days.map((day) => Date.parse(`${day.day}T00:00:00Z`) / 1000)}
          series={[
            { label: 'Earnings', values: days.map((day) => day.earnings.amount_micro / 1e6) },
          ]}
          format={(value) => formatMoney({ currency, amount: value.toFixed(6) })}
        />
      </Suspense>
    </Stack>
  );
}

export default function NodesPage() {
  const queryClient = useQueryClient();
  const nodes = useQuery({
    queryKey: NODES,
    queryFn: () => unwrap(api.GET('/v1/nodes', { params: { query: { limit: 500 } } })),
    refetchInterval: 5_000,
  });
  const [registering, setRegistering] = useState(false);
  const [name, setName] = useState('');
  const [type, setType] = useState<Schemas['ExitType']>('residential');
  const [created, setCreated] = useState<AgentNode | null>(null);
  const [chosen, setChosen] = useState<string | null>(null);
  const register = useMutation({
    mutationFn: (body: Schemas['CreateNodeRequest']) => unwrap(api.POST('/v1/nodes', { body })),
    onSuccess: (node) => {
      setRegistering(false);
      if ('token' in node) setCreated(node);
      void queryClient.invalidateQueries({ queryKey: NODES });
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    register.mutate({ name: name.trim(), type });
  };
  const [search, setSearch] = useSearchParams();
  const returned = search.get('payouts');
  useEffect(() => {
    if (!returned) return;
    notifications.show(
      returned === 'linked'
        ? { color: 'teal', title: 'Back from Stripe', message: 'Your payout account is linked.' }
        : { color: 'yellow', title: 'The Stripe link expired', message: 'Ask for a new one.' },
    );
    void queryClient.invalidateQueries({ queryKey: ['payouts'] });
    setSearch({}, { replace: true });
  }, [returned, queryClient, setSearch]);
  const items = nodes.data?.items ?? [];
  const selected = items.find((node) => node.id === chosen) ?? items[0];
  return (
    <>
      <PageHeader
        title="Nodes & payouts"
        description="Share bandwidth from your machines: each node earns for the traffic it carries."
        action={
          <Button
            onClick={() => {
              register.reset();
              setRegistering(true);
            }}
          >
            Register node
          </Button>
        }
      />
      <Stack gap="lg">
        <Card withBorder padding={0}>
          <div className="table-scroll">
            <Table miw={640} verticalSpacing="sm" horizontalSpacing="md">
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Node</Table.Th>
                  <Table.Th>State</Table.Th>
                  <Table.Th>Exits</Table.Th>
                  <Table.Th>Carried</Table.Th>
                  <Table.Th>Earned</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {items.map((node) => (
                  <Table.Tr key={node.id} data-testid={`node-${node.id}`}>
                    <Table.Td>
                      <Text size="sm" fw={500}>
                        {node.name || 'Unnamed node'}
                      </Text>
                      <Text size="xs" c="dimmed" tt="capitalize">
                        {node.type} · {node.kind === 'agent' ? 'agent' : 'upstream proxy'}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      <Badge color={node.online ? 'teal' : 'gray'}>
                        {node.online ? 'Online' : 'Offline'}
                      </Badge>
                    </Table.Td>
                    <Table.Td>
                      <ExitList exits={node.exits} />
                    </Table.Td>
                    <Table.Td>{formatBytes(node.bytes_carried)}</Table.Td>
                    <Table.Td>{formatMoney(node.earnings)}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </div>
          {items.some((node) => node.exits.some((exit) => exit.country)) && (
            <Text size="xs" c="dimmed" px="md" pb="sm">
              Places:{' '}
              <Anchor href="https://db-ip.com" size="xs">
                IP Geolocation by DB-IP
              </Anchor>
            </Text>
          )}
          {nodes.isSuccess && items.length === 0 && (
            <Stack align="center" p="xl" gap="xs">
              <Text fw={500}>No nodes yet</Text>
              <Text c="dimmed" size="sm">
                Register a node and run the agent on a machine with spare bandwidth.
              </Text>
            </Stack>
          )}
        </Card>
        {selected && (
          <Card withBorder>
            <Group justify="space-between" mb="sm">
              <Title order={3} size="h4">
                Earnings
              </Title>
              <Select
                aria-label="Node"
                data={items.map((node) => ({ value: node.id, label: node.name || node.id }))}
                value={selected.id}
                onChange={setChosen}
                w={220}
              />
            </Group>
            <Earnings node={selected} />
          </Card>
        )}
        <Payouts />
      </Stack>
      <Modal opened={registering} onClose={() => setRegistering(false)} title="Register a node">
        <form onSubmit={submit}>
          <Stack>
            <RefusalAlert error={register.error} />
            <TextInput
              label="Name"
              placeholder="home-office"
              value={name}
              onChange={(event) => setName(event.currentTarget.value)}
              data-autofocus
            />
            <Select
              label="Exit type"
              data={[
                { value: 'residential', label: 'Residential' },
                { value: 'datacenter', label: 'Datacenter' },
                { value: 'mobile', label: 'Mobile' },
              ]}
              value={type}
              onChange={(value) => setType((value ?? 'residential') as Schemas['ExitType'])}
            />
            <Group justify="flex-end">
              <Button type="submit" loading={register.isPending}>
                Register
              </Button>
            </Group>
          </Stack>
        </form>
      </Modal>
      <Modal
        opened={created !== null}
        onClose={() => setCreated(null)}
        title="Run the agent"
        size="lg"
      >
        {created && (
          <Stack>
            <Alert color="yellow" title="Copy the token now">
              It is shown only once. Run this in a clone of IPCola on the machine that will carry
              traffic; add --country and --exit-ip as needed (npm run agent -- --help).
            </Alert>
            <CopyField label="Agent command" value={created.agent_command} block />
            <CopyField label="Node token" value={created.token} />
          </Stack>
        )}
      </Modal>
    </>
  );
}

type NodeExit = Schemas['NodeExit'];

const EXIT_STATE: Record<NodeExit['state'], { label: string; color: string }> = {
  verified: { label: 'verified', color: 'teal' },
  declared: { label: 'declared', color: 'blue' },
  pending: { label: 'pending proof', color: 'yellow' },
  mismatch: { label: 'proof mismatch', color: 'red' },
  duplicate: { label: 'held by another node', color: 'red' },
};

/** Each exit IP with whether it is proven, and where the geolocation database places it. */
function ExitList({ exits }: { exits: NodeExit[] }) {
  if (exits.length === 0) return <Text size="sm">–</Text>;
  return (
    <Stack gap={4}>
      {exits.map((exit) => {
        const state = EXIT_STATE[exit.state];
        const place = [exit.city?.replaceAll('_', ' '), exit.region, exit.country?.toUpperCase()]
          .filter(Boolean)
          .join(', ');
        return (
          <div key={exit.ip} data-testid={`exit-${exit.ip}`}>
            <Group gap={6} wrap="nowrap">
              <Text size="sm" className="mono">
                {exit.public_ip && exit.public_ip !== exit.ip
                  ? `${exit.ip} → ${exit.public_ip}`
                  : exit.ip}
              </Text>
              <Badge size="xs" variant="dot" color={state.color}>
                {state.label}
              </Badge>
            </Group>
            {(place || exit.asn) && (
              <Text size="xs" c="dimmed">
                {[
                  place,
                  exit.asn
                    ? `AS${exit.asn}${exit.as_organization ? ` ${exit.as_organization}` : ''}`
                    : '',
                ]
                  .filter(Boolean)
                  .join(' · ')}
              </Text>
            )}
          </div>
        );
      })}
    </Stack>
  );
}
