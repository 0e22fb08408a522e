/** Who is signed in: GET /v1/me, which also gives the CSRF token back after a reload. */
import { useQuery } from '@tanstack/react-query';
import { api, type Schemas, setCsrfToken, unwrap } from './api/client.ts';

export const ME = ['me'] as const;

export type Me = Schemas['Me'];

export async function fetchMe(): Promise<Me | null> {
  const answer = await api.GET('/v1/me');
  if (answer.response.status === 401) {
    setCsrfToken(undefined);
    return null;
  }
  const me = await unwrap(Promise.resolve(answer));
  setCsrfToken(me.csrf_token);
  return me;
}

export function useMe() {
  // The balance in the header follows spending; a session ended elsewhere shows the log-in page.
  return useQuery({ queryKey: ME, queryFn: fetchMe, refetchInterval: 60_000 });
}
