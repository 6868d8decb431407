// The local cluster's kubelet: one per node, driving that node's containerd over the CRI and
// reporting to the API test server through the in-process ApiClient. See kubelet.ts.
export { Kubelet, type KubeletOptions } from './kubelet.js';
