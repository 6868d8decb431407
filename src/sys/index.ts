/**
 * Ambit's native layer: the one typed wrapper through which the agent and the proxy make the Linux
 * calls Node's `net` lacks (setns, SO_MARK, IP_TRANSPARENT, SO_REUSEPORT, SO_ORIGINAL_DST, rtnetlink).
 * Import from here, never from native.ts: that file is the only one that touches koffi.
 */
export { NetnsHandle, currentNetnsId, inNetns, openNetns } from './netns.js';
export {
  closeFd,
  connectSocket,
  createListenSocket,
  createTcpSocket,
  createUdpSocket,
  getMark,
  getOriginalDst,
  peerCredentials,
  getsockoptInt,
  localAddress,
  setMark,
  setsockoptInt,
  socketFd,
  type ConnectOptions,
  type PeerCredentials,
  type ListenSocketOptions,
  type SocketOptions,
  type UdpSocketOptions,
} from './socket.js';
export { SysError } from './errors.js';
export { NetlinkError, RtnlSocket, withRtnl, type FwmarkRule, type LocalDefaultRoute, type RouteView, type RuleView } from './netlink.js';
export { type IpFamily, type SocketAddress } from './sockaddr.js';
export * as constants from './constants.js';
