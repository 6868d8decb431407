/**
 * ambit-cni's command logic: one run of the plugin, from (environment, stdin) to (stdout, stderr,
 * exit code), with the agent behind an injected client so tests need no socket.
 *
 * ADD asks the agent about the pod and returns prevResult (converted to the requested version)
 * only once the agent said "enrolled" (redirection in place) or "not-enrolled"; anything else is
 * an error and the runtime does not start the pod. DEL tells the agent and always succeeds once
 * the input is valid: a missing agent must not block pod deletion, and the agent reconciles
 * deleted pods itself on restart. CHECK asks the agent whether the pod is still as ADD left it.
 */
import type { CniPodRequest } from '../api/cni.js';
import { httpAgentClient, type AgentClient, type AgentEndpoint } from './agent-client.js';
import {
  CniCode,
  CniError,
  configVersionForErrors,
  convertResult,
  errorResult,
  parseCommand,
  parseEnvironment,
  parseNetworkConfig,
  podAddresses,
  podFromArgs,
  versionResult,
  type CniEnvironment,
  type Env,
  type NetworkConfig,
} from './spec.js';

export interface Invocation {
  env: Env;
  /** the whole of stdin, decoded as UTF-8 */
  stdin: string;
}

export interface PluginOutput {
  stdout: string;
  /** unstructured log lines for the runtime's log (the spec allows stderr for that) */
  stderr: string;
  exitCode: 0 | 1;
}

export type AgentConnector = (endpoint: AgentEndpoint) => AgentClient;

/** Runs one CNI command. Never throws: every failure becomes the spec's error JSON and exit 1. */
export async function runPlugin(inv: Invocation, connect: AgentConnector = httpAgentClient): Promise<PluginOutput> {
  const log: string[] = [];
  try {
    if (parseCommand(inv.env) === 'VERSION') return ok(JSON.stringify(versionResult(inv.stdin)), log);
    const env = parseEnvironment(inv.env);
    const conf = parseNetworkConfig(inv.stdin, env.command);
    const agent = () => connect({ socketPath: conf.agentSocket, timeoutMs: conf.timeoutMs });
    switch (env.command) {
      case 'ADD':
        return ok(await add(env, conf, agent, log), log);
      case 'DEL':
        await del(env, conf, agent, log);
        return ok('', log);
      case 'CHECK':
        await check(env, conf, agent, log);
        return ok('', log);
    }
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CniCode.IoFailure, 'ambit-cni failed unexpectedly', (err as Error)?.stack ?? String(err));
    log.push(`ambit-cni: ${inv.env.CNI_COMMAND ?? '?'} failed (code ${e.code}): ${e.message}`);
    return { stdout: JSON.stringify(errorResult(e, configVersionForErrors(inv.stdin))), stderr: lines(log), exitCode: 1 };
  }
}

function ok(stdout: string, log: string[]): PluginOutput {
  return { stdout, stderr: lines(log), exitCode: 0 };
}

const lines = (log: string[]): string => log.map((l) => `${l}\n`).join('');

/** The pod this run is about, or why the agent need not be asked. */
function podRequest(env: CniEnvironment, conf: NetworkConfig): CniPodRequest | { skip: string } {
  const pod = podFromArgs(env.args);
  if (!pod) return { skip: 'not a Kubernetes pod (no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS)' };
  if (conf.excludeNamespaces.includes(pod.namespace)) return { skip: `namespace ${pod.namespace} is excluded in the network configuration` };
  return {
    pod,
    containerId: env.containerId,
    netns: env.netns,
    ifname: env.ifname,
    ips: podAddresses(conf.prevResult, env.ifname),
    network: conf.name,
  };
}

const describe = (req: CniPodRequest): string => `${req.pod.namespace}/${req.pod.name} (sandbox ${req.containerId.slice(0, 12)})`;

async function add(env: CniEnvironment, conf: NetworkConfig, agent: () => AgentClient, log: string[]): Promise<string> {
  // Converted first: a prevResult we cannot hand on fails before the agent programs anything.
  const result = JSON.stringify(convertResult(conf.prevResult!, conf.cniVersion));
  const req = podRequest(env, conf);
  if ('skip' in req) {
    log.push(`ambit-cni: ADD ${env.containerId.slice(0, 12)} passed through: ${req.skip}`);
    return result;
  }
  const started = Date.now();
  const reply = await agent().add(req);
  log.push(`ambit-cni: ADD ${describe(req)}: ${reply.decision} in ${Date.now() - started} ms`);
  return result;
}

async function del(env: CniEnvironment, conf: NetworkConfig, agent: () => AgentClient, log: string[]): Promise<void> {
  const req = podRequest(env, conf);
  if ('skip' in req) return;
  try {
    await agent().del(req);
  } catch (err) {
    log.push(`ambit-cni: DEL ${describe(req)}: the agent was not told (${(err as Error).message}); it cleans up deleted pods when it reconciles`);
  }
}

async function check(env: CniEnvironment, conf: NetworkConfig, agent: () => AgentClient, log: string[]): Promise<void> {
  const req = podRequest(env, conf);
  if ('skip' in req) return;
  const reply = await agent().check(req);
  if (!reply.ok) throw new CniError(CniCode.CheckFailed, `ambit-agent reports ${req.pod.namespace}/${req.pod.name} is not as ADD left it`, reply.problem ?? '');
  log.push(`ambit-cni: CHECK ${describe(req)}: ok`);
}
