/** An exit directory as one instance of a test cluster runs it, with its gateway index as a map. */
import {
  createExitDirectory,
  type ExitDirectory,
  type PlacedExit,
} from '../../src/cluster/exit-directory.ts';
import type { HotState } from '../../src/store/index.ts';
import { quietLogger } from './engines.ts';

export interface TestDirectory {
  readonly directory: ExitDirectory;
  /** The gateway index: node id to its leasable exits. */
  readonly index: ReadonlyMap<string, readonly PlacedExit[]>;
}

export function testDirectory(
  hotState: Pick<HotState, 'registry' | 'broadcast'>,
  id: string,
  options: {
    /** Whether this instance's hub holds the node's agent now. */
    isLocalAgent(nodeId: string): boolean;
    /** Told each time a node leaves the index. */
    onRemoved?(nodeId: string): void;
  },
): TestDirectory {
  const index = new Map<string, readonly PlacedExit[]>();
  const directory = createExitDirectory({
    registry: hotState.registry,
    broadcast: hotState.broadcast,
    instanceId: id,
    clusterName: 'test',
    peerAddress: `${id}.invalid:9000`,
    index: {
      addNodeExits: (nodeId, exits) => index.set(nodeId, exits),
      removeNodeExits: (nodeId) => {
        if (index.delete(nodeId)) options.onRemoved?.(nodeId);
      },
    },
    isLocalAgent: options.isLocalAgent,
    exitStates: () => [],
    disconnectLocal: () => {},
    logger: quietLogger,
  });
  return { directory, index };
}
