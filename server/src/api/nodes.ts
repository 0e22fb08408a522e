/**
 * /v1/nodes: exit nodes. An agent node's token is shown once, with the command that
 * starts the agent; an upstream-proxy node's password is never shown back.
 */

import type { components } from '@ipcola/openapi';
import express, { type Router } from 'express';
import type { Accounts } from '../accounts/index.ts';
import { ipcolaError } from '../errors/index.ts';
import {
  describeProxy,
  type RegisteredUpstreamNode,
  type UpstreamRegistration,
} from '../upstream/index.ts';
import { callerOf } from './auth.ts';
import { agentCommand } from './connection.ts';
import type { ResourceRouterOptions } from './control.ts';
import { createdList } from './pages.ts';
import { found, idParam, jsonBody, moneyView, onlyMethods, optionalBody } from './requests.ts';

type Schemas = components['schemas'];

export interface UpstreamNodeRegistrar {
  /** Checks and stores the node, and makes its exits leasable; throws invalid_request naming the field. */
  register(accountId: string, registration: UpstreamRegistration): Promise<RegisteredUpstreamNode>;
}

/** What the server sees of a node now: online, its exit IPs, each one's proof and place. */
export interface NodeStatusView {
  online: boolean;
  exitIps: string[];
  exits: ReadonlyArray<{
    ip: string;
    state: Schemas['NodeExit']['state'];
    publicIp?: string;
    place?: {
      country?: string;
      region?: string;
      city?: string;
      asn?: number;
      asOrganization?: string;
    };
  }>;
}

export interface NodesOptions extends ResourceRouterOptions {
  accounts: Pick<Accounts, 'listNodes' | 'registerNode' | 'deleteNode'>;
  nodeStatus?: (nodeId: string) => NodeStatusView;
  nodeDeleted?: (nodeId: string) => void;
  upstreamNodes?: UpstreamNodeRegistrar;
}

export function nodesRouter(options: NodesOptions): Router {
  const { accounts, bodies, caller, idempotent, endpoint } = options;
  const router = express.Router();

  router
    .route('/nodes')
    .get(
      caller,
      createdList(accounts.listNodes.bind(accounts), (node): Schemas['Node'] => {
        const status = options.nodeStatus?.(node.id) ?? { online: false, exitIps: [], exits: [] };
        return {
          id: node.id,
          name: node.name,
          type: node.type,
          kind: node.kind,
          online: status.online,
          exit_ips: status.exitIps,
          exits: status.exits.map(({ ip, state, publicIp, place }) => ({
            ip,
            state,
            public_ip: publicIp ?? null,
            country: place?.country ?? null,
            region: place?.region ?? null,
            city: place?.city ?? null,
            asn: place?.asn ?? null,
            as_organization: place?.asOrganization ?? null,
          })),
          bytes_carried: node.bytesCarried,
          earnings: moneyView(node.currency, node.earnedMicro),
          created_at: node.createdAt.toISOString(),
        };
      }),
    )
    .post(caller, jsonBody, idempotent, async (req, res) => {
      const body = bodies.check('CreateNodeRequest', optionalBody(req));
      if (body.upstream) {
        if (!options.upstreamNodes) {
          throw ipcolaError('invalid_request', 'upstream-proxy nodes are not enabled here');
        }
        const node = await options.upstreamNodes.register(callerOf(res).accountId, {
          name: body.name ?? '',
          type: body.type ?? 'datacenter',
          upstream: body.upstream,
        });
        res.status(201).json({
          id: node.id,
          name: node.name,
          type: node.type,
          created_at: node.createdAt.toISOString(),
          upstream: upstreamView(node),
        } satisfies Schemas['UpstreamNodeCreated']);
        return;
      }
      const node = await accounts.registerNode(callerOf(res).accountId, {
        name: body.name ?? '',
        type: body.type ?? 'residential',
      });
      res.status(201).json({
        id: node.id,
        name: node.name,
        type: node.type,
        created_at: node.createdAt.toISOString(),
        token: node.token,
        agent_command: agentCommand(endpoint(), node.token, node.type),
      } satisfies Schemas['AgentNodeCreated']);
    })
    .all(onlyMethods('GET', 'HEAD', 'POST'));

  router
    .route('/nodes/:id')
    .delete(caller, idempotent, async (req, res) => {
      const nodeId = idParam(req);
      found(await accounts.deleteNode(callerOf(res).accountId, nodeId), 'No such node');
      options.nodeDeleted?.(nodeId);
      res.status(204).end();
    })
    .all(onlyMethods('DELETE'));

  return router;
}

/** The proxy without its password: never shown again once registered. */
function upstreamView(node: RegisteredUpstreamNode): Schemas['UpstreamProxy'] {
  const { country, region, city, asn } = node.location;
  return {
    url: describeProxy(node.proxy),
    exit_ips: [...node.exitIps],
    country,
    ...(region !== undefined ? { region } : {}),
    ...(city !== undefined ? { city } : {}),
    ...(asn !== undefined ? { asn } : {}),
  };
}
