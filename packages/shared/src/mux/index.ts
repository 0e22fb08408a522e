/**
 * The tunnel multiplexer (`ipcola-tunnel.v2`): many streams over one connection between
 * the hub and an agent, lighter per stream than HTTP/2 (see frames.ts for why).
 */
export {
  FrameError,
  MAX_DATA_PAYLOAD,
  RESET_ABORTED,
  RESET_CANCEL,
  RESET_REFUSED,
} from './frames.ts';
export {
  MuxSession,
  type MuxSessionOptions,
  type OpenRequest,
  type PingCallback,
} from './session.ts';
export { ANSWER_EVENT, MuxStream, StreamResetError } from './stream.ts';
