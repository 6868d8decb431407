/**
 * ambit-cni's command logic: one run of the plugin, from (environment, stdin) to (stdout, stderr,
 * exit code). It runs inside ambit-agent: the binary the runtime executes (native/ambit-cni.c)
 * relays each invocation to the agent (src/api/cni.ts), whose CNI server calls runPlugin with the
 * agent's own handlers, so the pod request reaches them without a second hop.
 *
 * ADD hands the pod to `enrol` and returns prevResult (converted to the requested version) only
 * once it said "enrolled" (redirection in place) or "not-enrolled"; anything else is an error and
 * the runtime does not start the pod. DEL tells `release` and always succeeds once the input is
 * valid: a failing release must not block pod deletion, and the agent reconciles deleted pods
 * itself. CHECK asks `check` whether the pod is still as ADD left it.
 */
import type { CniCheckReply, CniPodRequest, EnrolDecision } from '../api/cni.js';
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
  type CniCodeValue,
  type CniEnvironment,
  type Env,
  type NetworkConfig,
} from './spec.js';

export interface Invocation {
  env: Env;
  /** the whole of stdin, decoded as UTF-8 */
  stdin: string;
}

/** How a run ended, for the agent's metrics and logs. */
export type CniOutcome =
  | EnrolDecision
  /** DEL or CHECK done, or VERSION answered */
  | 'ok'
  /** ADD/DEL/CHECK of a sandbox that is not a pod or is in an excluded namespace: nobody asked */
  | 'passed-through'
  /** invalid input (codes 1, 2, 4, 6, 7): a runtime or configuration problem */
  | 'bad-request'
  /** the agent cannot decide yet (code 11) */
  | 'try-again'
  /** the agent tried and failed, or a bug (codes 5, 100, 102) */
  | 'failed';

export interface PluginOutput {
  stdout: string;
  /** unstructured log lines for the runtime's log (the spec allows stderr for that) */
  stderr: string;
  exitCode: 0 | 1;
  outcome: CniOutcome;
  /** the error code when exitCode is 1 */
  code?: CniCodeValue;
  /** "namespace/name" when the sandbox is a pod */
  pod?: string;
}

/**
 * What the agent does for the pods the runtime reports. The CNI server calls these in process.
 * Throw `CniTryAgain` when undecided (agent still syncing): the runtime sees error 11 and retries.
 * Any other exception is a failure (error 100 on ADD, 102 on CHECK; logged and ignored on DEL).
 */
export interface CniHandlers {
  /** Resolves once the pod is enrolled (rules in place, proxy listening) or known not to be. */
  enrol(req: CniPodRequest): Promise<EnrolDecision>;
  /** The sandbox is going away; must tolerate repeats and unknown pods. Default: nothing to do. */
  release?(req: CniPodRequest): Promise<void>;
  /** Whether the pod is still as ADD left it. Default: ok. */
  check?(req: CniPodRequest): Promise<CniCheckReply>;
}

/** Thrown by a handler that cannot decide yet; the runtime will retry. */
export class CniTryAgain extends Error {
  override readonly name = 'CniTryAgain';
}

/** Runs one CNI command. Never throws: every failure becomes the spec's error JSON and exit 1. */
export async function runPlugin(inv: Invocation, handlers: CniHandlers): Promise<PluginOutput> {
  const run: Run = { log: [], outcome: 'ok' };
  try {
    if (parseCommand(inv.env) === 'VERSION') return done(JSON.stringify(versionResult(inv.stdin)), run);
    const env = parseEnvironment(inv.env);
    const conf = parseNetworkConfig(inv.stdin, env.command);
    switch (env.command) {
      case 'ADD':
        return done(await add(env, conf, handlers, run), run);
      case 'DEL':
        await del(env, conf, handlers, run);
        return done('', run);
      case 'CHECK':
        await check(env, conf, handlers, run);
        return done('', run);
    }
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CniCode.IoFailure, 'ambit-cni failed unexpectedly', (err as Error)?.stack ?? String(err));
    run.log.push(`ambit-cni: ${inv.env.CNI_COMMAND ?? '?'} failed (code ${e.code}): ${e.message}`);
    return {
      stdout: JSON.stringify(errorResult(e, configVersionForErrors(inv.stdin))),
      stderr: lines(run.log),
      exitCode: 1,
      outcome: outcomeOfCode(e.code),
      code: e.code,
      ...(run.pod ? { pod: run.pod } : {}),
    };
  }
}

/** What one run has learnt so far. */
interface Run {
  log: string[];
  outcome: CniOutcome;
  pod?: string;
}

function done(stdout: string, run: Run): PluginOutput {
  return { stdout, stderr: lines(run.log), exitCode: 0, outcome: run.outcome, ...(run.pod ? { pod: run.pod } : {}) };
}

const lines = (log: string[]): string => log.map((l) => `${l}\n`).join('');

export function outcomeOfCode(code: CniCodeValue): CniOutcome {
  if (code === CniCode.TryAgainLater) return 'try-again';
  if (code === CniCode.IoFailure || code === CniCode.EnrolmentFailed || code === CniCode.CheckFailed || code === CniCode.AgentProtocol) return 'failed';
  return 'bad-request';
}

/** The pod this run is about, or why the agent need not be asked. */
function podRequest(env: CniEnvironment, conf: NetworkConfig, run: Run): CniPodRequest | { skip: string } {
  const pod = podFromArgs(env.args);
  if (pod) run.pod = `${pod.namespace}/${pod.name}`;
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

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

async function add(env: CniEnvironment, conf: NetworkConfig, h: CniHandlers, run: Run): Promise<string> {
  // Converted first: a prevResult we cannot hand on fails before the agent programs anything.
  const result = JSON.stringify(convertResult(conf.prevResult!, conf.cniVersion));
  const req = podRequest(env, conf, run);
  if ('skip' in req) {
    run.outcome = 'passed-through';
    run.log.push(`ambit-cni: ADD ${env.containerId.slice(0, 12)} passed through: ${req.skip}`);
    return result;
  }
  const started = Date.now();
  let decision: unknown;
  try {
    decision = await h.enrol(req);
  } catch (err) {
    if (err instanceof CniTryAgain) throw new CniError(CniCode.TryAgainLater, `ambit-agent cannot set up the pod yet: ${err.message}`);
    throw new CniError(CniCode.EnrolmentFailed, `ambit-agent failed to set up the pod: ${messageOf(err)}`);
  }
  if (decision !== 'enrolled' && decision !== 'not-enrolled') {
    throw new CniError(CniCode.EnrolmentFailed, `ambit-agent failed to set up the pod: enrol returned ${JSON.stringify(decision)}`);
  }
  run.outcome = decision;
  run.log.push(`ambit-cni: ADD ${describe(req)}: ${decision} in ${Date.now() - started} ms`);
  return result;
}

async function del(env: CniEnvironment, conf: NetworkConfig, h: CniHandlers, run: Run): Promise<void> {
  const req = podRequest(env, conf, run);
  if ('skip' in req) {
    run.outcome = 'passed-through';
    return;
  }
  try {
    await h.release?.(req);
  } catch (err) {
    run.log.push(`ambit-cni: DEL ${describe(req)}: the agent could not release the pod (${messageOf(err)}); it cleans up deleted pods when it reconciles`);
  }
}

async function check(env: CniEnvironment, conf: NetworkConfig, h: CniHandlers, run: Run): Promise<void> {
  const req = podRequest(env, conf, run);
  if ('skip' in req) {
    run.outcome = 'passed-through';
    return;
  }
  let reply: CniCheckReply;
  try {
    reply = (await h.check?.(req)) ?? { ok: true };
  } catch (err) {
    if (err instanceof CniTryAgain) throw new CniError(CniCode.TryAgainLater, `ambit-agent cannot check the pod yet: ${err.message}`);
    throw new CniError(CniCode.CheckFailed, `ambit-agent failed to check the pod: ${messageOf(err)}`);
  }
  if (!reply.ok) throw new CniError(CniCode.CheckFailed, `ambit-agent reports ${req.pod.namespace}/${req.pod.name} is not as ADD left it`, reply.problem ?? '');
  run.log.push(`ambit-cni: CHECK ${describe(req)}: ok`);
}
