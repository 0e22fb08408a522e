import { Badge, Button, Card, Group, Menu, Modal, Stack, Table, Text } from '@mantine/core';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, type Schemas, unwrap } from '../api/client.ts';
import { Confirm } from '../components/Confirm.tsx';
import { KeyForm } from '../components/KeyForm.tsx';
import { keyRequest, NEW_KEY, settingsOf } from '../components/key-settings.ts';
import { PageHeader } from '../components/PageHeader.tsx';
import { SecretReveal } from '../components/SecretReveal.tsx';
import { formatBytes, formatDate } from '../format.ts';

type Key = Schemas['Key'];

export const KEYS = ['keys'] as const;

export function useKeys() {
  return useQuery({
    queryKey: KEYS,
    queryFn: () => unwrap(api.GET('/v1/keys', { params: { query: { limit: 500 } } })),
  });
}

function limits(key: Key): string {
  const parts = [
    key.monthly_byte_cap === null ? null : `${formatBytes(key.monthly_byte_cap)}/month`,
    key.max_concurrency === null ? null : `${key.max_concurrency} connections`,
    key.allowed_countries ? key.allowed_countries.join(', ').toUpperCase() : null,
    key.client_allowlist ? `${key.client_allowlist.length} allowed ranges` : null,
  ].filter(Boolean);
  return parts.length ? parts.join(' · ') : 'No limits';
}

export default function KeysPage() {
  const queryClient = useQueryClient();
  const keys = useKeys();
  const [creating, setCreating] = useState(false);
  const [editing, setEditing] = useState<Key | null>(null);
  const [revoking, setRevoking] = useState<Key | null>(null);
  const [rotating, setRotating] = useState<Key | null>(null);
  const [revealed, setRevealed] = useState<Schemas['KeyCreated'] | null>(null);
  const refresh = () => queryClient.invalidateQueries({ queryKey: KEYS });

  const create = useMutation({
    mutationFn: (body: Schemas['UpdateKeyRequest']) => unwrap(api.POST('/v1/keys', { body })),
    onSuccess: (created) => {
      setCreating(false);
      setRevealed(created);
      void refresh();
    },
  });
  const update = useMutation({
    mutationFn: ({ id, body }: { id: string; body: Schemas['UpdateKeyRequest'] }) =>
      unwrap(api.PATCH('/v1/keys/{id}', { params: { path: { id } }, body })),
    onSuccess: () => {
      setEditing(null);
      void refresh();
    },
  });
  const revoke = useMutation({
    mutationFn: (id: string) => unwrap(api.DELETE('/v1/keys/{id}', { params: { path: { id } } })),
    onSuccess: () => {
      setRevoking(null);
      void refresh();
    },
  });
  const rotate = useMutation({
    mutationFn: (id: string) =>
      unwrap(api.POST('/v1/keys/{id}/rotate', { params: { path: { id } } })),
    onSuccess: (created) => {
      setRotating(null);
      setRevealed(created);
    },
  });

  const items = keys.data?.items ?? [];
  return (
    <>
      <PageHeader
        title="API keys"
        description="Each key is a proxy username and password; its limits apply within a second."
        action={
          <Button
            onClick={() => {
              create.reset();
              setCreating(true);
            }}
          >
            Create key
          </Button>
        }
      />
      <Card withBorder padding={0}>
        <div className="table-scroll">
          <Table miw={640} verticalSpacing="sm" horizontalSpacing="md" highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Key id</Table.Th>
                <Table.Th>Status</Table.Th>
                <Table.Th>Limits</Table.Th>
                <Table.Th>Created</Table.Th>
                <Table.Th>
                  <span className="visually-hidden">Actions</span>
                </Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {items.map((key) => (
                <Table.Tr key={key.id} data-testid={`key-${key.id}`}>
                  <Table.Td fw={500}>{key.name || 'Unnamed key'}</Table.Td>
                  <Table.Td className="mono">{key.id}</Table.Td>
                  <Table.Td>
                    <Group gap={4} wrap="nowrap">
                      <Badge color={key.disabled ? 'gray' : 'teal'}>
                        {key.disabled ? 'Disabled' : 'Active'}
                      </Badge>
                      {key.scopes.includes('api') && <Badge variant="outline">API</Badge>}
                    </Group>
                  </Table.Td>
                  <Table.Td>
                    <Text size="sm">{limits(key)}</Text>
                  </Table.Td>
                  <Table.Td>
                    <Text size="sm">{formatDate(key.created_at)}</Text>
                  </Table.Td>
                  <Table.Td>
                    <Menu position="bottom-end" withinPortal>
                      <Menu.Target>
                        <Button
                          variant="subtle"
                          size="xs"
                          aria-label={`Manage ${key.name || key.id}`}
                        >
                          Manage
                        </Button>
                      </Menu.Target>
                      <Menu.Dropdown>
                        <Menu.Item
                          onClick={() => {
                            update.reset();
                            setEditing(key);
                          }}
                        >
                          Edit name and limits
                        </Menu.Item>
                        <Menu.Item
                          onClick={() =>
                            update.mutate({ id: key.id, body: { disabled: !key.disabled } })
                          }
                        >
                          {key.disabled ? 'Enable' : 'Disable'}
                        </Menu.Item>
                        <Menu.Item onClick={() => setRotating(key)}>Rotate secret</Menu.Item>
                        <Menu.Divider />
                        <Menu.Item color="red" onClick={() => setRevoking(key)}>
                          Revoke
                        </Menu.Item>
                      </Menu.Dropdown>
                    </Menu>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </div>
        {keys.isSuccess && items.length === 0 && (
          <Stack align="center" p="xl" gap="xs">
            <Text fw={500}>No keys yet</Text>
            <Text c="dimmed" size="sm">
              Create a key to send traffic through the gateway.
            </Text>
          </Stack>
        )}
      </Card>

      <Modal opened={creating} onClose={() => setCreating(false)} title="Create key" size="lg">
        <KeyForm
          initial={NEW_KEY}
          submitLabel="Create key"
          pending={create.isPending}
          error={create.error}
          onSubmit={(settings) => create.mutate(keyRequest(settings))}
        />
      </Modal>
      <Modal opened={editing !== null} onClose={() => setEditing(null)} title="Edit key" size="lg">
        {editing && (
          <KeyForm
            initial={settingsOf(editing)}
            submitLabel="Save"
            pending={update.isPending}
            error={update.error}
            onSubmit={(settings) => update.mutate({ id: editing.id, body: keyRequest(settings) })}
          />
        )}
      </Modal>
      <Modal
        opened={revealed !== null}
        onClose={() => setRevealed(null)}
        title="Your key"
        size="lg"
      >
        {revealed && <SecretReveal created={revealed} />}
      </Modal>
      <Confirm
        opened={revoking !== null}
        title="Revoke this key?"
        message={`${revoking?.name || revoking?.id}: the gateway refuses it within a second and its open connections close. This cannot be undone.`}
        confirmLabel="Revoke key"
        pending={revoke.isPending}
        onConfirm={() => revoking && revoke.mutate(revoking.id)}
        onClose={() => setRevoking(null)}
      />
      <Confirm
        opened={rotating !== null}
        title="Rotate this key's secret?"
        message="The old secret stops working within a second and connections made with it close. The new secret is shown once."
        confirmLabel="Rotate secret"
        pending={rotate.isPending}
        onConfirm={() => rotating && rotate.mutate(rotating.id)}
        onClose={() => setRotating(null)}
      />
    </>
  );
}
