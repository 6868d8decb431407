/**
 * The subset of the Kubernetes protobuf schema (go-to-protobuf's generated.proto files, proto2) that
 * kubectl's typed clientsets send as request bodies. Field numbers and wire types are upstream's;
 * only the messages and fields kubectl can send are here (a field missing from a message is skipped
 * by the decoder like an unknown JSON field).
 *
 * Kept as TypeScript string constants so the compiled code needs no .proto file at run time.
 *
 * Two custom field options carry what the wire cannot say but the JSON form depends on (they
 * mirror the Go struct tags):
 *   (keepZero) = true  the Go field is a pointer, or its json tag has no `omitempty`: a zero value
 *                      on the wire is still emitted (gogo writes every non-pointer scalar, so
 *                      without this an empty string or 0 is dropped, as Go's JSON omitempty does);
 *                      on a repeated field: an empty list is rendered as null, as Go does for nil
 *   (inline) = true    the Go field is an embedded struct (`json:",inline"`): its fields are merged
 *                      into the parent object instead of nested under the field name
 * Field names are the JSON names; upstream's proto names differ in a few places (noted inline).
 */

const RUNTIME = `
syntax = "proto2";
package k8s.io.apimachinery.pkg.runtime;

message TypeMeta {
  optional string apiVersion = 1;
  optional string kind = 2;
}

// The envelope after the 4-byte magic: raw is the object's own message.
message Unknown {
  optional TypeMeta typeMeta = 1;
  optional bytes raw = 2;
  optional string contentEncoding = 3;
  optional string contentType = 4;
}
`;

const INTSTR = `
syntax = "proto2";
package k8s.io.apimachinery.pkg.util.intstr;

// type 0 = Int (intVal), 1 = String (strVal)
message IntOrString {
  optional int64 type = 1;
  optional int32 intVal = 2;
  optional string strVal = 3;
}
`;

const RESOURCE = `
syntax = "proto2";
package k8s.io.apimachinery.pkg.api.resource;

message Quantity {
  optional string string = 1;
}
`;

const META_V1 = `
syntax = "proto2";
package k8s.io.apimachinery.pkg.apis.meta.v1;

// Go decodes only the seconds (metav1.Time has seconds precision in JSON); an empty message is the
// zero time, which JSON renders as null.
message Time {
  optional int64 seconds = 1;
  optional int32 nanos = 2;
}

message FieldsV1 {
  optional bytes raw = 1; // upstream name: Raw
}

message ManagedFieldsEntry {
  optional string manager = 1;
  optional string operation = 2;
  optional string apiVersion = 3;
  optional Time time = 4;
  optional string fieldsType = 6;
  optional FieldsV1 fieldsV1 = 7;
  optional string subresource = 8;
}

message OwnerReference {
  optional string apiVersion = 5 [(keepZero) = true];
  optional string kind = 1 [(keepZero) = true];
  optional string name = 3 [(keepZero) = true];
  optional string uid = 4 [(keepZero) = true];
  optional bool controller = 6 [(keepZero) = true];
  optional bool blockOwnerDeletion = 7 [(keepZero) = true];
}

message ObjectMeta {
  optional string name = 1;
  optional string generateName = 2;
  optional string namespace = 3;
  optional string selfLink = 4;
  optional string uid = 5;
  optional string resourceVersion = 6;
  optional int64 generation = 7;
  optional Time creationTimestamp = 8;
  optional Time deletionTimestamp = 9;
  optional int64 deletionGracePeriodSeconds = 10 [(keepZero) = true];
  map<string, string> labels = 11;
  map<string, string> annotations = 12;
  repeated OwnerReference ownerReferences = 13;
  repeated string finalizers = 14;
  repeated ManagedFieldsEntry managedFields = 17;
}

message LabelSelector {
  map<string, string> matchLabels = 1;
  repeated LabelSelectorRequirement matchExpressions = 2;
}

message LabelSelectorRequirement {
  optional string key = 1 [(keepZero) = true];
  optional string operator = 2 [(keepZero) = true];
  repeated string values = 3;
}

message Condition {
  optional string type = 1 [(keepZero) = true];
  optional string status = 2 [(keepZero) = true];
  optional int64 observedGeneration = 3;
  optional Time lastTransitionTime = 4;
  optional string reason = 5 [(keepZero) = true];
  optional string message = 6 [(keepZero) = true];
}

message Preconditions {
  optional string uid = 1 [(keepZero) = true];
  optional string resourceVersion = 2 [(keepZero) = true];
}

message DeleteOptions {
  optional int64 gracePeriodSeconds = 1 [(keepZero) = true];
  optional Preconditions preconditions = 2;
  optional bool orphanDependents = 3 [(keepZero) = true];
  optional string propagationPolicy = 4 [(keepZero) = true];
  repeated string dryRun = 5;
  optional bool ignoreStoreReadErrorWithClusterBreakingPotential = 6 [(keepZero) = true];
}
`;

const CORE_V1 = `
syntax = "proto2";
package k8s.io.api.core.v1;

message LocalObjectReference {
  optional string name = 1;
}

message ObjectReference {
  optional string kind = 1;
  optional string namespace = 2;
  optional string name = 3;
  optional string uid = 4;
  optional string apiVersion = 5;
  optional string resourceVersion = 6;
  optional string fieldPath = 7;
}

message Namespace {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional NamespaceSpec spec = 2;
  optional NamespaceStatus status = 3;
}

message NamespaceSpec {
  repeated string finalizers = 1;
}

message NamespaceStatus {
  optional string phase = 1;
  repeated NamespaceCondition conditions = 2;
}

message NamespaceCondition {
  optional string type = 1 [(keepZero) = true];
  optional string status = 2 [(keepZero) = true];
  optional k8s.io.apimachinery.pkg.apis.meta.v1.Time lastTransitionTime = 4;
  optional string reason = 5;
  optional string message = 6;
}

message ConfigMap {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  map<string, string> data = 2;
  map<string, bytes> binaryData = 3;
  optional bool immutable = 4 [(keepZero) = true];
}

message Secret {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  map<string, bytes> data = 2;
  optional string type = 3;
  map<string, string> stringData = 4;
  optional bool immutable = 5 [(keepZero) = true];
}

message ServiceAccount {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  repeated ObjectReference secrets = 2;
  repeated LocalObjectReference imagePullSecrets = 3;
  optional bool automountServiceAccountToken = 4 [(keepZero) = true];
}

message Service {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional ServiceSpec spec = 2;
  optional ServiceStatus status = 3;
}

message ServiceSpec {
  repeated ServicePort ports = 1;
  map<string, string> selector = 2;
  optional string clusterIP = 3;
  optional string type = 4;
  repeated string externalIPs = 5;
  optional string sessionAffinity = 7;
  optional string loadBalancerIP = 8;
  repeated string loadBalancerSourceRanges = 9;
  optional string externalName = 10;
  optional string externalTrafficPolicy = 11;
  optional int32 healthCheckNodePort = 12;
  optional bool publishNotReadyAddresses = 13;
  optional SessionAffinityConfig sessionAffinityConfig = 14;
  optional string ipFamilyPolicy = 17 [(keepZero) = true];
  repeated string clusterIPs = 18;
  repeated string ipFamilies = 19;
  optional bool allocateLoadBalancerNodePorts = 20 [(keepZero) = true];
  optional string loadBalancerClass = 21 [(keepZero) = true];
  optional string internalTrafficPolicy = 22 [(keepZero) = true];
  optional string trafficDistribution = 23 [(keepZero) = true];
}

message ServicePort {
  optional string name = 1;
  optional string protocol = 2;
  optional int32 port = 3 [(keepZero) = true];
  optional k8s.io.apimachinery.pkg.util.intstr.IntOrString targetPort = 4;
  optional int32 nodePort = 5;
  optional string appProtocol = 6 [(keepZero) = true];
}

message SessionAffinityConfig {
  optional ClientIPConfig clientIP = 1;
}

message ClientIPConfig {
  optional int32 timeoutSeconds = 1 [(keepZero) = true];
}

message ServiceStatus {
  optional LoadBalancerStatus loadBalancer = 1;
  repeated k8s.io.apimachinery.pkg.apis.meta.v1.Condition conditions = 2;
}

message LoadBalancerStatus {
  repeated LoadBalancerIngress ingress = 1;
}

message LoadBalancerIngress {
  optional string ip = 1;
  optional string hostname = 2;
  optional string ipMode = 3 [(keepZero) = true];
  repeated PortStatus ports = 4;
}

message PortStatus {
  optional int32 port = 1 [(keepZero) = true];
  optional string protocol = 2 [(keepZero) = true];
  optional string error = 3 [(keepZero) = true];
}

message Pod {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional PodSpec spec = 2;
  optional PodStatus status = 3;
}

// Only what a client may set on create; the rest of a pod's status is the kubelet's.
message PodStatus {
  optional string phase = 1;
  optional string message = 3;
  optional string reason = 4;
}

message PodTemplateSpec {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional PodSpec spec = 2;
}

message PodSpec {
  repeated Volume volumes = 1;
  repeated Container containers = 2 [(keepZero) = true];
  optional string restartPolicy = 3;
  optional int64 terminationGracePeriodSeconds = 4 [(keepZero) = true];
  optional int64 activeDeadlineSeconds = 5 [(keepZero) = true];
  optional string dnsPolicy = 6;
  map<string, string> nodeSelector = 7;
  optional string serviceAccountName = 8;
  optional string serviceAccount = 9;
  optional string nodeName = 10;
  optional bool hostNetwork = 11;
  optional bool hostPID = 12;
  optional bool hostIPC = 13;
  optional PodSecurityContext securityContext = 14;
  repeated LocalObjectReference imagePullSecrets = 15;
  optional string hostname = 16;
  optional string subdomain = 17;
  optional string schedulerName = 19;
  repeated Container initContainers = 20;
  optional bool automountServiceAccountToken = 21 [(keepZero) = true];
  repeated Toleration tolerations = 22;
  repeated HostAlias hostAliases = 23;
  optional string priorityClassName = 24;
  optional int32 priority = 25 [(keepZero) = true];
  optional bool shareProcessNamespace = 27 [(keepZero) = true];
  optional string runtimeClassName = 29 [(keepZero) = true];
  optional bool enableServiceLinks = 30 [(keepZero) = true];
  optional string preemptionPolicy = 31 [(keepZero) = true];
  map<string, k8s.io.apimachinery.pkg.api.resource.Quantity> overhead = 32;
  optional bool setHostnameAsFQDN = 35 [(keepZero) = true];
  optional PodOS os = 36;
  optional bool hostUsers = 37 [(keepZero) = true];
  repeated PodSchedulingGate schedulingGates = 38;
  optional ResourceRequirements resources = 40;
}

message PodOS {
  optional string name = 1 [(keepZero) = true];
}

message PodSchedulingGate {
  optional string name = 1 [(keepZero) = true];
}

message HostAlias {
  optional string ip = 1 [(keepZero) = true];
  repeated string hostnames = 2;
}

message Toleration {
  optional string key = 1;
  optional string operator = 2;
  optional string value = 3;
  optional string effect = 4;
  optional int64 tolerationSeconds = 5 [(keepZero) = true];
}

message PodSecurityContext {
  optional SELinuxOptions seLinuxOptions = 1;
  optional int64 runAsUser = 2 [(keepZero) = true];
  optional bool runAsNonRoot = 3 [(keepZero) = true];
  repeated int64 supplementalGroups = 4;
  optional int64 fsGroup = 5 [(keepZero) = true];
  optional int64 runAsGroup = 6 [(keepZero) = true];
  repeated Sysctl sysctls = 7;
  optional string fsGroupChangePolicy = 9 [(keepZero) = true];
  optional SeccompProfile seccompProfile = 10;
}

message Sysctl {
  optional string name = 1 [(keepZero) = true];
  optional string value = 2 [(keepZero) = true];
}

message SELinuxOptions {
  optional string user = 1;
  optional string role = 2;
  optional string type = 3;
  optional string level = 4;
}

message SeccompProfile {
  optional string type = 1 [(keepZero) = true];
  optional string localhostProfile = 2 [(keepZero) = true];
}

message SecurityContext {
  optional Capabilities capabilities = 1;
  optional bool privileged = 2 [(keepZero) = true];
  optional SELinuxOptions seLinuxOptions = 3;
  optional int64 runAsUser = 4 [(keepZero) = true];
  optional bool runAsNonRoot = 5 [(keepZero) = true];
  optional bool readOnlyRootFilesystem = 6 [(keepZero) = true];
  optional bool allowPrivilegeEscalation = 7 [(keepZero) = true];
  optional int64 runAsGroup = 8 [(keepZero) = true];
  optional string procMount = 9 [(keepZero) = true];
  optional SeccompProfile seccompProfile = 11;
}

message Capabilities {
  repeated string add = 1;
  repeated string drop = 2;
}

message Container {
  optional string name = 1 [(keepZero) = true];
  optional string image = 2;
  repeated string command = 3;
  repeated string args = 4;
  optional string workingDir = 5;
  repeated ContainerPort ports = 6;
  repeated EnvVar env = 7;
  optional ResourceRequirements resources = 8;
  repeated VolumeMount volumeMounts = 9;
  optional Probe livenessProbe = 10;
  optional Probe readinessProbe = 11;
  optional Lifecycle lifecycle = 12;
  optional string terminationMessagePath = 13;
  optional string imagePullPolicy = 14;
  optional SecurityContext securityContext = 15;
  optional bool stdin = 16;
  optional bool stdinOnce = 17;
  optional bool tty = 18;
  repeated EnvFromSource envFrom = 19;
  optional string terminationMessagePolicy = 20;
  optional Probe startupProbe = 22;
  repeated ContainerResizePolicy resizePolicy = 23;
  optional string restartPolicy = 24 [(keepZero) = true];
}

message ContainerResizePolicy {
  optional string resourceName = 1 [(keepZero) = true];
  optional string restartPolicy = 2 [(keepZero) = true];
}

message ContainerPort {
  optional string name = 1;
  optional int32 hostPort = 2;
  optional int32 containerPort = 3 [(keepZero) = true];
  optional string protocol = 4;
  optional string hostIP = 5;
}

message EnvVar {
  optional string name = 1 [(keepZero) = true];
  optional string value = 2;
  optional EnvVarSource valueFrom = 3;
}

message EnvVarSource {
  optional ObjectFieldSelector fieldRef = 1;
  optional ResourceFieldSelector resourceFieldRef = 2;
  optional ConfigMapKeySelector configMapKeyRef = 3;
  optional SecretKeySelector secretKeyRef = 4;
}

message ObjectFieldSelector {
  optional string apiVersion = 1;
  optional string fieldPath = 2 [(keepZero) = true];
}

message ResourceFieldSelector {
  optional string containerName = 1;
  optional string resource = 2 [(keepZero) = true];
  optional k8s.io.apimachinery.pkg.api.resource.Quantity divisor = 3;
}

message ConfigMapKeySelector {
  optional LocalObjectReference localObjectReference = 1 [(inline) = true];
  optional string key = 2 [(keepZero) = true];
  optional bool optional = 3 [(keepZero) = true];
}

message SecretKeySelector {
  optional LocalObjectReference localObjectReference = 1 [(inline) = true];
  optional string key = 2 [(keepZero) = true];
  optional bool optional = 3 [(keepZero) = true];
}

message EnvFromSource {
  optional string prefix = 1;
  optional ConfigMapEnvSource configMapRef = 2;
  optional SecretEnvSource secretRef = 3;
}

message ConfigMapEnvSource {
  optional LocalObjectReference localObjectReference = 1 [(inline) = true];
  optional bool optional = 2 [(keepZero) = true];
}

message SecretEnvSource {
  optional LocalObjectReference localObjectReference = 1 [(inline) = true];
  optional bool optional = 2 [(keepZero) = true];
}

message ResourceRequirements {
  map<string, k8s.io.apimachinery.pkg.api.resource.Quantity> limits = 1;
  map<string, k8s.io.apimachinery.pkg.api.resource.Quantity> requests = 2;
  repeated ResourceClaim claims = 3;
}

message ResourceClaim {
  optional string name = 1 [(keepZero) = true];
  optional string request = 2;
}

message VolumeMount {
  optional string name = 1 [(keepZero) = true];
  optional bool readOnly = 2;
  optional string mountPath = 3 [(keepZero) = true];
  optional string subPath = 4;
  optional string mountPropagation = 5 [(keepZero) = true];
  optional string subPathExpr = 6;
  optional string recursiveReadOnly = 7 [(keepZero) = true];
}

message Probe {
  optional ProbeHandler handler = 1 [(inline) = true];
  optional int32 initialDelaySeconds = 2;
  optional int32 timeoutSeconds = 3;
  optional int32 periodSeconds = 4;
  optional int32 successThreshold = 5;
  optional int32 failureThreshold = 6;
  optional int64 terminationGracePeriodSeconds = 7 [(keepZero) = true];
}

message ProbeHandler {
  optional ExecAction exec = 1;
  optional HTTPGetAction httpGet = 2;
  optional TCPSocketAction tcpSocket = 3;
  optional GRPCAction grpc = 4;
}

message Lifecycle {
  optional LifecycleHandler postStart = 1;
  optional LifecycleHandler preStop = 2;
  optional string stopSignal = 3 [(keepZero) = true];
}

message LifecycleHandler {
  optional ExecAction exec = 1;
  optional HTTPGetAction httpGet = 2;
  optional TCPSocketAction tcpSocket = 3;
  optional SleepAction sleep = 4;
}

message ExecAction {
  repeated string command = 1;
}

message HTTPGetAction {
  optional string path = 1;
  optional k8s.io.apimachinery.pkg.util.intstr.IntOrString port = 2;
  optional string host = 3;
  optional string scheme = 4;
  repeated HTTPHeader httpHeaders = 5;
}

message HTTPHeader {
  optional string name = 1 [(keepZero) = true];
  optional string value = 2 [(keepZero) = true];
}

message TCPSocketAction {
  optional k8s.io.apimachinery.pkg.util.intstr.IntOrString port = 1;
  optional string host = 2;
}

message GRPCAction {
  optional int32 port = 1 [(keepZero) = true];
  optional string service = 2 [(keepZero) = true];
}

message SleepAction {
  optional int64 seconds = 1 [(keepZero) = true];
}

message Volume {
  optional string name = 1 [(keepZero) = true];
  optional VolumeSource volumeSource = 2 [(inline) = true];
}

message VolumeSource {
  optional HostPathVolumeSource hostPath = 1;
  optional EmptyDirVolumeSource emptyDir = 2;
  optional SecretVolumeSource secret = 6;
  optional PersistentVolumeClaimVolumeSource persistentVolumeClaim = 10;
  optional DownwardAPIVolumeSource downwardAPI = 16;
  optional ConfigMapVolumeSource configMap = 19;
  optional ProjectedVolumeSource projected = 26;
}

message HostPathVolumeSource {
  optional string path = 1 [(keepZero) = true];
  optional string type = 2 [(keepZero) = true];
}

message EmptyDirVolumeSource {
  optional string medium = 1;
  optional k8s.io.apimachinery.pkg.api.resource.Quantity sizeLimit = 2;
}

message SecretVolumeSource {
  optional string secretName = 1;
  repeated KeyToPath items = 2;
  optional int32 defaultMode = 3 [(keepZero) = true];
  optional bool optional = 4 [(keepZero) = true];
}

message ConfigMapVolumeSource {
  optional LocalObjectReference localObjectReference = 1 [(inline) = true];
  repeated KeyToPath items = 2;
  optional int32 defaultMode = 3 [(keepZero) = true];
  optional bool optional = 4 [(keepZero) = true];
}

message KeyToPath {
  optional string key = 1 [(keepZero) = true];
  optional string path = 2 [(keepZero) = true];
  optional int32 mode = 3 [(keepZero) = true];
}

message PersistentVolumeClaimVolumeSource {
  optional string claimName = 1 [(keepZero) = true];
  optional bool readOnly = 2;
}

message DownwardAPIVolumeSource {
  repeated DownwardAPIVolumeFile items = 1;
  optional int32 defaultMode = 2 [(keepZero) = true];
}

message DownwardAPIVolumeFile {
  optional string path = 1 [(keepZero) = true];
  optional ObjectFieldSelector fieldRef = 2;
  optional ResourceFieldSelector resourceFieldRef = 3;
  optional int32 mode = 4 [(keepZero) = true];
}

message ProjectedVolumeSource {
  repeated VolumeProjection sources = 1 [(keepZero) = true];
  optional int32 defaultMode = 2 [(keepZero) = true];
}

message VolumeProjection {
  optional SecretProjection secret = 1;
  optional DownwardAPIProjection downwardAPI = 2;
  optional ConfigMapProjection configMap = 3;
  optional ServiceAccountTokenProjection serviceAccountToken = 4;
}

message SecretProjection {
  optional LocalObjectReference localObjectReference = 1 [(inline) = true];
  repeated KeyToPath items = 2;
  optional bool optional = 4 [(keepZero) = true];
}

message ConfigMapProjection {
  optional LocalObjectReference localObjectReference = 1 [(inline) = true];
  repeated KeyToPath items = 2;
  optional bool optional = 4 [(keepZero) = true];
}

message DownwardAPIProjection {
  repeated DownwardAPIVolumeFile items = 1;
}

message ServiceAccountTokenProjection {
  optional string audience = 1;
  optional int64 expirationSeconds = 2 [(keepZero) = true];
  optional string path = 3 [(keepZero) = true];
}
`;

const APPS_V1 = `
syntax = "proto2";
package k8s.io.api.apps.v1;

message Deployment {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional DeploymentSpec spec = 2;
  optional DeploymentStatus status = 3;
}

message DeploymentSpec {
  optional int32 replicas = 1 [(keepZero) = true];
  optional k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelector selector = 2;
  optional k8s.io.api.core.v1.PodTemplateSpec template = 3;
  optional DeploymentStrategy strategy = 4;
  optional int32 minReadySeconds = 5;
  optional int32 revisionHistoryLimit = 6 [(keepZero) = true];
  optional bool paused = 7;
  optional int32 progressDeadlineSeconds = 9 [(keepZero) = true];
  optional string podReplacementPolicy = 10 [(keepZero) = true];
}

message DeploymentStrategy {
  optional string type = 1;
  optional RollingUpdateDeployment rollingUpdate = 2;
}

message RollingUpdateDeployment {
  optional k8s.io.apimachinery.pkg.util.intstr.IntOrString maxUnavailable = 1;
  optional k8s.io.apimachinery.pkg.util.intstr.IntOrString maxSurge = 2;
}

message DeploymentStatus {
  optional int64 observedGeneration = 1;
  optional int32 replicas = 2;
  optional int32 updatedReplicas = 3;
  optional int32 availableReplicas = 4;
  optional int32 unavailableReplicas = 5;
  repeated DeploymentCondition conditions = 6;
  optional int32 readyReplicas = 7;
  optional int32 collisionCount = 8 [(keepZero) = true];
  optional int32 terminatingReplicas = 9 [(keepZero) = true];
}

message DeploymentCondition {
  optional string type = 1 [(keepZero) = true];
  optional string status = 2 [(keepZero) = true];
  optional string reason = 4;
  optional string message = 5;
  optional k8s.io.apimachinery.pkg.apis.meta.v1.Time lastUpdateTime = 6;
  optional k8s.io.apimachinery.pkg.apis.meta.v1.Time lastTransitionTime = 7;
}
`;

const RBAC_V1 = `
syntax = "proto2";
package k8s.io.api.rbac.v1;

message PolicyRule {
  repeated string verbs = 1 [(keepZero) = true];
  repeated string apiGroups = 2;
  repeated string resources = 3;
  repeated string resourceNames = 4;
  repeated string nonResourceURLs = 5;
}

message AggregationRule {
  repeated k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelector clusterRoleSelectors = 1;
}

message Role {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  repeated PolicyRule rules = 2 [(keepZero) = true];
}

message ClusterRole {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  repeated PolicyRule rules = 2 [(keepZero) = true];
  optional AggregationRule aggregationRule = 3;
}

message Subject {
  optional string kind = 1 [(keepZero) = true];
  optional string apiGroup = 2;
  optional string name = 3 [(keepZero) = true];
  optional string namespace = 4;
}

message RoleRef {
  optional string apiGroup = 1 [(keepZero) = true];
  optional string kind = 2 [(keepZero) = true];
  optional string name = 3 [(keepZero) = true];
}

message RoleBinding {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  repeated Subject subjects = 2;
  optional RoleRef roleRef = 3;
}

message ClusterRoleBinding {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  repeated Subject subjects = 2;
  optional RoleRef roleRef = 3;
}
`;

const AUTHENTICATION_V1 = `
syntax = "proto2";
package k8s.io.api.authentication.v1;

message TokenRequest {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional TokenRequestSpec spec = 2;
  optional TokenRequestStatus status = 3;
}

message TokenRequestSpec {
  repeated string audiences = 1 [(keepZero) = true];
  optional BoundObjectReference boundObjectRef = 3;
  optional int64 expirationSeconds = 4 [(keepZero) = true];
}

message BoundObjectReference {
  optional string kind = 1;
  optional string apiVersion = 2; // upstream name: aPIVersion
  optional string name = 3;
  optional string uid = 4;        // upstream name: uID
}

message TokenRequestStatus {
  optional string token = 1 [(keepZero) = true];
  optional k8s.io.apimachinery.pkg.apis.meta.v1.Time expirationTimestamp = 2;
}

message SelfSubjectReview {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional SelfSubjectReviewStatus status = 2;
}

message SelfSubjectReviewStatus {
  optional UserInfo userInfo = 1;
}

message UserInfo {
  optional string username = 1;
  optional string uid = 2;
  repeated string groups = 3;
  map<string, ExtraValue> extra = 4;
}

// JSON renders ExtraValue as a bare array of strings.
message ExtraValue {
  repeated string items = 1;
}
`;

const AUTHORIZATION_V1 = `
syntax = "proto2";
package k8s.io.api.authorization.v1;

message SelfSubjectAccessReview {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional SelfSubjectAccessReviewSpec spec = 2;
  optional SubjectAccessReviewStatus status = 3;
}

message SelfSubjectAccessReviewSpec {
  optional ResourceAttributes resourceAttributes = 1;
  optional NonResourceAttributes nonResourceAttributes = 2;
}

message SubjectAccessReview {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional SubjectAccessReviewSpec spec = 2;
  optional SubjectAccessReviewStatus status = 3;
}

message LocalSubjectAccessReview {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional SubjectAccessReviewSpec spec = 2;
  optional SubjectAccessReviewStatus status = 3;
}

message SubjectAccessReviewSpec {
  optional ResourceAttributes resourceAttributes = 1;
  optional NonResourceAttributes nonResourceAttributes = 2;
  optional string user = 3;
  repeated string groups = 4;
  map<string, ExtraValue> extra = 5;
  optional string uid = 6;
}

message ExtraValue {
  repeated string items = 1;
}

message ResourceAttributes {
  optional string namespace = 1;
  optional string verb = 2;
  optional string group = 3;
  optional string version = 4;
  optional string resource = 5;
  optional string subresource = 6;
  optional string name = 7;
  optional FieldSelectorAttributes fieldSelector = 8;
  optional LabelSelectorAttributes labelSelector = 9;
}

message FieldSelectorAttributes {
  optional string rawSelector = 1;
  repeated FieldSelectorRequirement requirements = 2;
}

message FieldSelectorRequirement {
  optional string key = 1 [(keepZero) = true];
  optional string operator = 2 [(keepZero) = true];
  repeated string values = 3;
}

message LabelSelectorAttributes {
  optional string rawSelector = 1;
  repeated k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement requirements = 2;
}

message NonResourceAttributes {
  optional string path = 1;
  optional string verb = 2;
}

message SubjectAccessReviewStatus {
  optional bool allowed = 1 [(keepZero) = true];
  optional string reason = 2;
  optional string evaluationError = 3;
  optional bool denied = 4;
}

message SelfSubjectRulesReview {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional SelfSubjectRulesReviewSpec spec = 2;
  optional SubjectRulesReviewStatus status = 3;
}

message SelfSubjectRulesReviewSpec {
  optional string namespace = 1;
}

message SubjectRulesReviewStatus {
  repeated ResourceRule resourceRules = 1 [(keepZero) = true];
  repeated NonResourceRule nonResourceRules = 2 [(keepZero) = true];
  optional bool incomplete = 3 [(keepZero) = true];
  optional string evaluationError = 4;
}

message ResourceRule {
  repeated string verbs = 1 [(keepZero) = true];
  repeated string apiGroups = 2;
  repeated string resources = 3;
  repeated string resourceNames = 4;
}

message NonResourceRule {
  repeated string verbs = 1 [(keepZero) = true];
  repeated string nonResourceURLs = 2;
}
`;

const POLICY_V1 = `
syntax = "proto2";
package k8s.io.api.policy.v1;

message Eviction {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions deleteOptions = 2;
}
`;

/** The proto sources, one per upstream package, in dependency order. */
export const PROTO_SOURCES: readonly string[] = [RUNTIME, INTSTR, RESOURCE, META_V1, CORE_V1, APPS_V1, RBAC_V1, AUTHENTICATION_V1, AUTHORIZATION_V1, POLICY_V1];

const META = 'k8s.io.apimachinery.pkg.apis.meta.v1';

/**
 * Which message a body's envelope names: `apiVersion/kind` -> fully qualified message name.
 * DeleteOptions is registered in every group version (client-go encodes it with the client's own
 * group version), so it is matched by kind alone.
 */
export const KIND_MESSAGES: Readonly<Record<string, string>> = {
  'v1/Namespace': 'k8s.io.api.core.v1.Namespace',
  'v1/ConfigMap': 'k8s.io.api.core.v1.ConfigMap',
  'v1/Secret': 'k8s.io.api.core.v1.Secret',
  'v1/ServiceAccount': 'k8s.io.api.core.v1.ServiceAccount',
  'v1/Service': 'k8s.io.api.core.v1.Service',
  'v1/Pod': 'k8s.io.api.core.v1.Pod',
  'apps/v1/Deployment': 'k8s.io.api.apps.v1.Deployment',
  'rbac.authorization.k8s.io/v1/Role': 'k8s.io.api.rbac.v1.Role',
  'rbac.authorization.k8s.io/v1/ClusterRole': 'k8s.io.api.rbac.v1.ClusterRole',
  'rbac.authorization.k8s.io/v1/RoleBinding': 'k8s.io.api.rbac.v1.RoleBinding',
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': 'k8s.io.api.rbac.v1.ClusterRoleBinding',
  'authentication.k8s.io/v1/TokenRequest': 'k8s.io.api.authentication.v1.TokenRequest',
  'authentication.k8s.io/v1/SelfSubjectReview': 'k8s.io.api.authentication.v1.SelfSubjectReview',
  'authorization.k8s.io/v1/SelfSubjectAccessReview': 'k8s.io.api.authorization.v1.SelfSubjectAccessReview',
  'authorization.k8s.io/v1/SelfSubjectRulesReview': 'k8s.io.api.authorization.v1.SelfSubjectRulesReview',
  'authorization.k8s.io/v1/SubjectAccessReview': 'k8s.io.api.authorization.v1.SubjectAccessReview',
  'authorization.k8s.io/v1/LocalSubjectAccessReview': 'k8s.io.api.authorization.v1.LocalSubjectAccessReview',
  'policy/v1/Eviction': 'k8s.io.api.policy.v1.Eviction',
  '*/DeleteOptions': `${META}.DeleteOptions`,
};

/** Message names whose JSON form is not an object (see decode.ts). */
export const SPECIAL = {
  time: `.${META}.Time`,
  fieldsV1: `.${META}.FieldsV1`,
  intOrString: '.k8s.io.apimachinery.pkg.util.intstr.IntOrString',
  quantity: '.k8s.io.apimachinery.pkg.api.resource.Quantity',
  authnExtraValue: '.k8s.io.api.authentication.v1.ExtraValue',
  authzExtraValue: '.k8s.io.api.authorization.v1.ExtraValue',
} as const;
