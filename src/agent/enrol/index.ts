/**
 * Enrolment: which pods of this node are in the mesh (desired.ts, pure), the state machine that
 * makes it so through injected effects (enroller.ts), and the real pod netns finder (netns.ts).
 */
export { desiredEnrolment, isGone, type Desired, type DesiredContext, type DesiredReason } from './desired.js';
export {
  Enroller,
  type BackoffOptions,
  type EnrolEffects,
  type EnrollerOptions,
  type PodRef,
  type PodSnapshot,
  type PodState,
  type PodWant,
  type ProxyHandle,
} from './enroller.js';
export {
  DEFAULT_NETNS_DIR,
  NetnsAmbiguous,
  NetnsFinder,
  identifyingAddresses,
  netnsAddresses,
  translateCniNetnsPath,
  type NetnsFinderOptions,
  type PodNetnsQuery,
} from './netns.js';
