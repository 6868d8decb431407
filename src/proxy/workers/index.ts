/**
 * The proxy over several worker threads: ProxyWorkerPool (main thread). What crosses to the
 * workers (protocol.ts) and the workers' side (worker.ts, credentials.ts) stay inside the module;
 * worker.ts is the threads' entry point and is never imported.
 */
export { ProxyWorkerPool, WorkerGoneError, type ProxyWorkerPoolEvents, type ProxyWorkerPoolOptions } from './pool.js';
export type { ModuleExport, PoolCredentials } from './protocol.js';
