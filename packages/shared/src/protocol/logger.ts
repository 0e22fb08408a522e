/**
 * The slice of a pino logger the tunnel uses, so that the agent does not depend on
 * pino and tests can pass a recorder.
 */
export interface TunnelLogger {
  debug(details: object, message: string): void;
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
  error(details: object, message: string): void;
}

const ignore = (): void => {};

export const silentLogger: TunnelLogger = {
  debug: ignore,
  info: ignore,
  warn: ignore,
  error: ignore,
};
