import {
  Alert,
  Anchor,
  Button,
  Center,
  Paper,
  PasswordInput,
  Stack,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { api, setCsrfToken, unwrap } from '../api/client.ts';
import { authErrorMessage, type Mode } from '../components/auth-errors.ts';
import { ME } from '../session.tsx';

export function AuthPage() {
  const [mode, setMode] = useState<Mode>('login');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const queryClient = useQueryClient();
  const submit = useMutation({
    mutationFn: () =>
      unwrap(
        mode === 'login'
          ? api.POST('/v1/auth/login', { body: { email, password } })
          : api.POST('/v1/auth/signup', { body: { email, password } }),
      ),
    onSuccess: (session) => {
      setCsrfToken(session.csrf_token);
      queryClient.setQueryData(ME, session);
    },
  });
  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    submit.mutate();
  };
  const switchTo = (next: Mode) => {
    setMode(next);
    submit.reset();
  };
  const tooShort = mode === 'signup' && password.length > 0 && password.length < 10;
  return (
    <Center mih="100vh" p="md">
      <Paper component="main" withBorder shadow="sm" p="xl" w="100%" maw={420}>
        <form onSubmit={onSubmit} noValidate>
          <Stack>
            <div>
              <Text fw={700} c="indigo.8" size="lg">
                IPCola
              </Text>
              <Title order={1} size="h2">
                {mode === 'login' ? 'Log in' : 'Create your account'}
              </Title>
              <Text c="dimmed" size="sm">
                {mode === 'login'
                  ? 'Rotating residential, datacenter and mobile proxies.'
                  : 'Start with trial credit; no card needed.'}
              </Text>
            </div>
            {submit.isError && (
              <Alert
                color="red"
                role="alert"
                title={mode === 'login' ? 'Not signed in' : 'Not signed up'}
              >
                {authErrorMessage(submit.error, mode)}
              </Alert>
            )}
            <TextInput
              label="Email"
              type="email"
              autoComplete="email"
              required
              value={email}
              onChange={(event) => setEmail(event.currentTarget.value)}
            />
            <PasswordInput
              label="Password"
              autoComplete={mode === 'login' ? 'current-password' : 'new-password'}
              required
              value={password}
              onChange={(event) => setPassword(event.currentTarget.value)}
              description={mode === 'signup' ? 'At least 10 characters.' : undefined}
              error={tooShort ? 'At least 10 characters' : undefined}
            />
            <Button type="submit" loading={submit.isPending} fullWidth>
              {mode === 'login' ? 'Log in' : 'Sign up'}
            </Button>
            <Text size="sm" ta="center">
              {mode === 'login' ? 'New to IPCola? ' : 'Already have an account? '}
              <Anchor
                component="button"
                type="button"
                onClick={() => switchTo(mode === 'login' ? 'signup' : 'login')}
              >
                {mode === 'login' ? 'Create an account' : 'Log in'}
              </Anchor>
            </Text>
          </Stack>
        </form>
      </Paper>
    </Center>
  );
}
