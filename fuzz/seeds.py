#!/usr/bin/env python3
"""Writes the seed inputs of each fuzz target into fuzz/corpus/<target>/.

Seeds are well-formed inputs the mesh meets every day (requests, hellos,
manifests); the fuzzer mutates from them. Run once before the first fuzz
run; fuzz/run.sh calls it when a corpus is missing. Needs only Python.
"""
import hashlib, json, os, ssl, struct, sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LOCAL = "web.emojivoto.serviceaccount.identity.linkerd.cluster.local"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def client_hello(sni):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if sni is None:
        ctx.check_hostname = False
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


# -- HTTP/2 frames, by hand: HPACK literals without indexing, new names.
def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack(headers):
    out = b""
    for k, v in headers:
        k, v = k.encode(), v.encode()
        out += b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v
    return out


def h2_request(headers, body=b"", stream=1):
    flags = 0x4 | (0 if body else 0x1)
    out = frame(0x1, flags, stream, hpack(headers))
    if body:
        out += frame(0x0, 0x1, stream, body)
    return out


SETTINGS = frame(0x4, 0, 0, b"")

requests = [
    "GET / HTTP/1.1\r\nHost: web-svc.emojivoto:80\r\n\r\n",
    "POST /api/vote?choice=:doughnut: HTTP/1.1\r\nHost: web-svc\r\nContent-Length: 5\r\n\r\nhello",
    "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n5\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, x-private\r\nUpgrade: websocket\r\nx-private: 1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "GET http://other.example/ HTTP/1.1\r\nHost: web-svc\r\nl5d-client-id: admin.linkerd.serviceaccount.identity.linkerd.cluster.local\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /grpc HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nTE: gzip\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nl5d-orig-proto: HTTP/1.0\r\n\r\nGET /two HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n",
]
for flags in (0, 1, 2):
    for r in requests:
        put("http1_inbound", bytes([flags]) + r.encode())

h2 = [
    h2_request([(":method", "GET"), (":scheme", "http"), (":authority", "web-svc.emojivoto:80"), (":path", "/")]),
    h2_request([(":method", "POST"), (":scheme", "http"), (":authority", "web-svc"), (":path", "/api/vote"),
                ("content-type", "application/grpc"), ("te", "trailers"), ("l5d-client-id", "me")], b"\x00\x00\x00\x00\x00"),
    h2_request([(":method", "GET"), (":scheme", "http"), (":authority", "web-svc"), (":path", "/"),
                ("l5d-orig-proto", "HTTP/1.1"), ("host", "other")]),
    h2_request([(":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "web-svc:80"),
                ("l5d-orig-proto", "HTTP/1.0")]),
    h2_request([(":method", "CONNECT"), (":authority", "example.com:443")]),
]
for flags in (0, 1, 2):
    for r in h2:
        put("http2_inbound", bytes([flags]) + SETTINGS + r)

hellos = [client_hello(LOCAL), client_hello("example.com"), client_hello(None),
          client_hello(LOCAL.upper())]
for seed in (0, 7, 200):
    for h in hellos:
        put("tls_hello", bytes([seed]) + h)

for seed in (0, 3, 250):
    for d in requests[:4] + [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SETTINGS, hellos[0],
                             "SSH-2.0-OpenSSH_9.2\r\n", "\x00\x00\x00\x08\x04\xd2\x16\x2f"]:
        put("detect", bytes([seed]) + (d if isinstance(d, bytes) else d.encode()))


# -- protobuf by hand, for ObserveRequest.
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, payload):
    if isinstance(payload, int):
        return varint(num << 3) + varint(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(num << 3 | 2) + varint(len(payload)) + payload


path_prefix = field(6, field(4, field(2, "/api")))
authority = field(6, field(2, field(1, "web-svc.emojivoto.svc.cluster.local:80")))
method = field(6, field(3, field(1, 1)))  # HttpMethod.registered = POST
label = field(7, field(1, "app") + field(2, "web"))
ports = field(5, field(3, field(1, 8000) + field(2, 9000)))
netmask = field(4, field(1, field(1, field(1, 0x0A000001)) + field(2, 8)))
matches = [path_prefix, authority, method, label, ports, netmask,
           field(1, field(1, path_prefix) + field(1, label)),
           field(2, field(1, ports) + field(1, field(3, authority))),
           field(3, method)]
for m in matches:
    put("tap_match", field(1, 100) + field(2, m))

# -- proxy environment: a variable's index (as in proxy/src/fuzz.rs) and its value.
env = [
    (1, "0.0.0.0:4143"), (2, "127.0.0.1:4140"), (3, "0.0.0.0:4191"), (9, "10s"),
    (17, "25,587,3306,4444-4450"), (20, "true"), (24, LOCAL), (29, "all-unauthenticated"),
    (30, "10.0.0.0/8,fd00::/8"), (34, "8080,9000-9100"), (36, "65536"), (40, "2"),
    (41, "localhost.:8086"), (43, "svc.cluster.local.,."), (44, "10.0.0.0/8"),
    (0, "warn,linkerd=info"), (22, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
]
put("proxy_config", b"\n".join(bytes([i]) + v.encode() for i, v in env))
for i, v in env:
    put("proxy_config", bytes([i]) + v.encode())

# -- proxy-init flags, NUL-separated.
for argv in [
    ["--incoming-proxy-port", "4143", "--outgoing-proxy-port", "4140", "--proxy-uid", "2102",
     "--inbound-ports-to-ignore", "4190,4191,4567,4568", "--outbound-ports-to-ignore", "443,6379-6380"],
    ["--subnets-to-ignore", "10.0.0.0/8,192.168.0.0/16", "--simulate"],
    ["--inbound-ports-to-ignore", ",".join(str(p) for p in range(1, 40, 2))],
    ["--iptables-mode", "nft", "--outbound-ports-to-ignore", "1-65535"],
]:
    put("init_flags", "\0".join(argv))

for d in ["10s", "1m30s", "250ms", "2h", "0s", "1.5s", "100us", "3d"]:
    put("duration", d)

for p in ["web-svc.emojivoto.svc.cluster.local:80", "web-0.web.emojivoto.svc.cluster.local:8080",
          "10.0.0.7:8080", "[fd00::7]:80", "Web.Emojivoto.svc.cluster.local.", "voting-svc.emojivoto.svc.cluster.local:8080"]:
    put("destination_path", p)

for s in ["proxy.logLevel=debug", "sproxy.image.version=0.1.0",
          "proxyInit.ignoreInboundPorts=4567\\,4568", "identity.issuer.scheme=kubernetes.io/tls",
          "clusterNetworks=10.0.0.0/8\\,100.64.0.0/10", "podAnnotations.a=b\npodLabels.c=d",
          "proxy.resources.cpu.request=100m", "controllerReplicas=3", "imagePullSecrets[0].name=x"]:
    put("chart_set", s)

# -- inject: the golden inputs.
gold = os.path.join(REPO, "tests", "golden", "inject")
for name in sorted(os.listdir(gold)):
    if name.endswith(".yaml") and ".out." not in name:
        with open(os.path.join(gold, name), "rb") as f:
            put("inject_yaml", f.read())

# -- the demo's topology, as `linkerd demo` writes it.
topology = """services:
  - {name: web-svc, namespace: emojivoto, selector: {app: web}, ports: [{port: 80, targetPort: 4143}]}
  - {name: emoji-svc, namespace: emojivoto, selector: {app: emoji}, ports: [{port: 8080, targetPort: 4143}]}
pods:
  - {name: web-1, namespace: emojivoto, ip: 127.0.0.11, labels: {app: web}, meshed: true, owner: {kind: Deployment, name: web}, serviceAccount: web}
  - {name: emoji-1, namespace: emojivoto, ip: 127.0.0.12, labels: {app: emoji}, meshed: true, owner: {kind: Deployment, name: emoji}, serviceAccount: emoji}
serviceProfiles:
- apiVersion: linkerd.io/v1alpha2
  kind: ServiceProfile
  metadata: {name: web-svc.emojivoto.svc.cluster.local, namespace: emojivoto}
  spec:
    routes:
    - name: GET /api/vote
      condition: {method: GET, pathRegex: /api/vote}
      isRetryable: true
      timeout: 2s
    retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}
tokens:
  - {token: emojivoto-web-demo-token, namespace: emojivoto, serviceAccount: web}
"""
put("local_topology", topology)
put("local_topology", "services: []\npods: []\n")

# -- admission reviews of pods.
def review(pod, ns="emojivoto", op="CREATE"):
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ns, "operation": op,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod, "oldObject": None, "dryRun": False,
        },
    })

pod = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"generateName": "web-", "labels": {"app": "web"}, "annotations": {}},
       "spec": {"serviceAccountName": "web",
                "containers": [{"name": "web", "image": "demo:0.1.0", "ports": [{"containerPort": 8080}]}]}}
put("admission_review", review(pod))
annotated = json.loads(json.dumps(pod))
annotated["metadata"]["annotations"] = {"config.linkerd.io/proxy-log-level": "debug",
                                        "config.linkerd.io/skip-inbound-ports": "4567",
                                        "config.linkerd.io/opaque-ports": "3306"}
put("admission_review", review(annotated))
skip = json.loads(json.dumps(pod))
skip["metadata"]["annotations"] = {"linkerd.io/inject": "disabled"}
put("admission_review", review(skip))
host = json.loads(json.dumps(pod))
host["spec"]["hostNetwork"] = True
put("admission_review", review(host, op="UPDATE"))
print("seeds written to", os.path.join(HERE, "corpus"))
