/**
 * The proxy over several worker threads: ProxyWorkerPool (main thread) and what crosses to the
 * workers. worker.ts is the threads' entry point and is never imported.
 */
export { ProxyWorkerPool, WorkerGoneError, type ProxyWorkerPoolEvents, type ProxyWorkerPoolOptions } from './pool.js';
export { PushedCredentials } from './credentials.js';
export { cumulativeOnly, fromWire, podKey, retireStats, toWire, type ModuleExport, type PoolCredentials, type WireCredentials } from './protocol.js';
