import { AppShell, Badge, Burger, Button, Group, NavLink, Text, Title } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import type { ReactNode } from 'react';
import { NavLink as RouterLink, useLocation } from 'react-router';
import { api, setCsrfToken, unwrap } from './api/client.ts';
import { formatMoney } from './format.ts';
import { ME, type Me } from './session.tsx';

const PAGES = [
  { to: '/keys', label: 'API keys' },
  { to: '/proxies', label: 'Proxy builder' },
  { to: '/usage', label: 'Usage' },
  { to: '/billing', label: 'Billing' },
  { to: '/nodes', label: 'Nodes & payouts' },
];

export function Shell({ me, children }: { me: Me; children: ReactNode }) {
  const [opened, { toggle, close }] = useDisclosure();
  const location = useLocation();
  const queryClient = useQueryClient();
  const logout = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/auth/logout', {})),
    onSettled: () => {
      setCsrfToken(undefined);
      queryClient.clear();
      queryClient.setQueryData(ME, null);
    },
  });
  return (
    <AppShell
      header={{ height: 60 }}
      navbar={{ width: 230, breakpoint: 'sm', collapsed: { mobile: !opened } }}
      padding="md"
    >
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger
              opened={opened}
              onClick={toggle}
              hiddenFrom="sm"
              size="sm"
              aria-label="Open navigation"
            />
            <Title order={1} size="h3" c="indigo.8">
              IPCola
            </Title>
          </Group>
          <Group gap="sm" wrap="nowrap">
            <Badge size="lg" variant="outline" visibleFrom="xs" aria-label="Balance">
              {formatMoney(me.account.balance)}
            </Badge>
            <Text size="sm" c="dimmed" visibleFrom="md">
              {me.user?.email}
            </Text>
            <Button variant="default" size="xs" onClick={() => logout.mutate()}>
              Log out
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="sm" aria-label="Portal pages">
        {PAGES.map((page) => (
          <NavLink
            key={page.to}
            component={RouterLink}
            to={page.to}
            label={page.label}
            className="nav-link"
            active={location.pathname === page.to}
            onClick={close}
          />
        ))}
        <NavLink href="/docs" label="API reference" />
      </AppShell.Navbar>
      <AppShell.Main>{children}</AppShell.Main>
    </AppShell>
  );
}
