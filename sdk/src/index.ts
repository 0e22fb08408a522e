export * from './client/config.ts';
export { IPCola } from './client/ipcola.ts';
export { type CursorPage, type ItemOf, PagedList } from './client/pagination.ts';
export type { RequestOptions } from './client/requester.ts';
export { SDK_VERSION } from './client/version.ts';
export * from './errors.ts';
