/**
 * `npm run apiserver`: runs the Kubernetes API test server on its own and writes an admin
 * kubeconfig. Options: --port N, --host ADDR, --kubeconfig PATH, --verbose.
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { ApiServer } from './server.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '6443' },
    host: { type: 'string', default: '127.0.0.1' },
    kubeconfig: { type: 'string', default: '.cache/kubeconfig' },
    verbose: { type: 'boolean', default: false },
  },
});

const server = await ApiServer.start({
  host: values.host!,
  port: Number(values.port),
  log: values.verbose ? (l) => console.error(l) : () => {},
});
const path = resolve(values.kubeconfig!);
server.writeKubeconfig(path);
console.log(`API server listening at ${server.url}`);
console.log(`KUBECONFIG=${path}`);
const stop = () => void server.close().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
