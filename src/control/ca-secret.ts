/**
 * The CA's Kubernetes I/O: the Secret holding the CA (a `CaSecretStore` for loadOrCreateCa) and
 * the ConfigMap that publishes the trust roots, so agents can verify the control plane's serving
 * certificate before they have talked to it (the role Istio's `istio-ca-root-cert` plays).
 * Both live in the control plane's namespace only; nothing here touches another namespace.
 */
import { ApiError, type KubeConnection } from '../k8s/client.js';
import type { CaSecretData, CaSecretStore } from '../identity/ca.js';

/** The key of the trust roots (PEM bundle) in the published ConfigMap. */
export const ROOT_CERT_KEY = 'root-cert.pem';

const secretPath = (ns: string, name?: string): string => `/api/v1/namespaces/${encodeURIComponent(ns)}/secrets${name ? `/${encodeURIComponent(name)}` : ''}`;
const configMapPath = (ns: string, name?: string): string => `/api/v1/namespaces/${encodeURIComponent(ns)}/configmaps${name ? `/${encodeURIComponent(name)}` : ''}`;

const isStatus = (err: unknown, code: number): boolean => err instanceof ApiError && err.statusCode === code;

/** A Secret `namespace/name` as CA storage. Two replicas creating it at once: the loser gets false. */
export function kubeSecretStore(kube: KubeConnection, namespace: string, name: string): CaSecretStore {
  return {
    async read() {
      let secret: { data?: Record<string, string> };
      try {
        secret = await kube.request('GET', secretPath(namespace, name));
      } catch (err) {
        if (isStatus(err, 404)) return undefined;
        throw err;
      }
      const out: CaSecretData = {};
      for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
      return out;
    },
    async create(data) {
      const encoded = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]));
      try {
        await kube.request('POST', secretPath(namespace), {
          body: { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'ambit', 'app.kubernetes.io/component': 'ca' } }, type: 'Opaque', data: encoded },
        });
        return true;
      } catch (err) {
        if (isStatus(err, 409)) return false;
        throw err;
      }
    },
  };
}

/** Creates or updates ConfigMap `namespace/name` so it holds `roots`; returns whether it wrote. */
export async function publishTrustRoots(kube: KubeConnection, namespace: string, name: string, roots: readonly string[]): Promise<boolean> {
  const bundle = roots.join('');
  let existing: { data?: Record<string, string> } | undefined;
  try {
    existing = await kube.request('GET', configMapPath(namespace, name));
  } catch (err) {
    if (!isStatus(err, 404)) throw err;
  }
  if (existing?.data?.[ROOT_CERT_KEY] === bundle) return false;
  if (!existing) {
    try {
      await kube.request('POST', configMapPath(namespace), {
        body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'ambit' } }, data: { [ROOT_CERT_KEY]: bundle } },
      });
      return true;
    } catch (err) {
      if (!isStatus(err, 409)) throw err; // the other replica was first: fall through and compare
    }
  }
  await kube.request('PATCH', configMapPath(namespace, name), { body: { data: { [ROOT_CERT_KEY]: bundle } }, contentType: 'application/merge-patch+json' });
  return true;
}
