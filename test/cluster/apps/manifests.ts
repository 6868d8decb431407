/**
 * Manifests of the demo apps, as users would write them: shared by the demo and the tests so that
 * what the demo shows is what the tests check.
 */
import { DEMO_IMAGES } from './images.js';

/**
 * The echo server as a Deployment behind a Service `echo` (port 80 → named port http): its
 * responses carry the pod's identity from the downward API, and a readiness probe on /healthz.
 */
export function echoApp(namespace: string, replicas: number): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: ${namespace}}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo, version: v1}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: echo
        image: ${DEMO_IMAGES.echo}
        ports: [{name: http, containerPort: 8080}]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: VERSION, valueFrom: {fieldRef: {fieldPath: "metadata.labels['version']"}}}
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: ${namespace}}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
`;
}
