/*
 * ambit-cni: the CNI plugin binary the container runtime runs for every pod sandbox.
 *
 * It is a relay, not the plugin's logic: it sends the CNI_* environment and stdin to the node's
 * ambit-agent (HTTP/1.1 over a unix socket, protocol in src/api/cni.ts), and prints what the agent
 * answers. The CNI spec logic lives in the agent (src/cni/), where it is table-tested and where the
 * enrolment happens anyway. Why C: Node's own start-up (60-85 ms here) alone breaks the ADD latency
 * budget, and nodes have no Node.js on the host. Static, libc only, no heap growth beyond stdin.
 *
 * What it decides itself, because those answers must not depend on the agent:
 *   - VERSION: the versions it relays (kept equal to src/cni/spec.ts SUPPORTED_VERSIONS by a test).
 *   - the agent is unreachable, times out, or breaks the connection:
 *       DEL   -> success (a missing agent must never block pod deletion; the agent reconciles);
 *       ADD   -> prevResult unchanged for a pod of a namespace in the config's excludeNamespaces,
 *                else the spec's error 11 "try again later" (fail closed: the runtime retries and
 *                the pod never runs unmeshed);
 *       CHECK -> error 11;
 *     with input it can judge alone (CNI_COMMAND, JSON syntax) reported like the agent would.
 *
 * For that it reads a few top-level keys of the config with a small validating JSON scanner:
 * cniVersion, agentSocket, timeoutMs, excludeNamespaces, prevResult (kept as a raw span).
 *
 * Build: gcc -O2 -static -Wall -Wextra -o dist/native/ambit-cni native/ambit-cni.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "@ambit/cni"
#define DEFAULT_TIMEOUT_MS 30000L
#define MAX_TIMEOUT_MS 600000L
#define MAX_STDIN (4u << 20)
/* The agent's stdout is prevResult (as big as stdin at most) plus headers. */
#define MAX_REPLY ((4u << 20) + (64u << 10))
#define MAX_JSON_DEPTH 1000
#define LATEST_VERSION "1.0.0"
#define RUN_PATH "/v1/cni/run"
#define KUBECTL_HINT "check `kubectl -n ambit-system get pods -l app=ambit-agent -o wide`"

/* Error codes of the CNI spec (and the agent protocol code of src/cni/spec.ts). */
enum { CODE_INVALID_ENV = 4, CODE_IO = 5, CODE_DECODING = 6, CODE_TRY_AGAIN = 11, CODE_AGENT_PROTOCOL = 101 };

static const char *const SUPPORTED_VERSIONS[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0"};
#define N_VERSIONS (sizeof SUPPORTED_VERSIONS / sizeof SUPPORTED_VERSIONS[0])

/* The env vars the agent needs, in the order sent, with their header names. */
static const struct {
  const char *env;
  const char *header;
} ENV_HEADERS[] = {
    {"CNI_COMMAND", "Cni-Command"}, {"CNI_CONTAINERID", "Cni-Containerid"}, {"CNI_NETNS", "Cni-Netns"},
    {"CNI_IFNAME", "Cni-Ifname"},   {"CNI_ARGS", "Cni-Args"},               {"CNI_PATH", "Cni-Path"},
};
#define N_ENV_HEADERS (sizeof ENV_HEADERS / sizeof ENV_HEADERS[0])

/* ---------- small buffers ---------- */

typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

/* false when the buffer would pass `limit` or memory runs out (data stays valid). */
static bool buf_reserve(buf_t *b, size_t extra, size_t limit) {
  if (extra > limit || b->len > limit - extra) return false;
  size_t need = b->len + extra + 1; /* +1: always room for a terminating NUL */
  if (need <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *p = realloc(b->data, cap);
  if (!p) return false;
  b->data = p;
  b->cap = cap;
  return true;
}

static bool buf_add(buf_t *b, const char *s, size_t n, size_t limit) {
  if (!buf_reserve(b, n, limit) || !b->data) return false; /* data is set once reserve succeeded */
  if (n) memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return true;
}

static bool buf_str(buf_t *b, const char *s) { return buf_add(b, s, strlen(s), SIZE_MAX / 4); }

/* A JSON string literal of bytes s[0..n): quotes, escapes for '"', '\\' and control characters. */
static bool buf_json_string(buf_t *b, const char *s, size_t n) {
  if (!buf_str(b, "\"")) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      esc[2] = '\0';
    } else if (c == '\n') {
      memcpy(esc, "\\n", 3);
    } else if (c == '\t') {
      memcpy(esc, "\\t", 3);
    } else if (c < 0x20 || c == 0x7f) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
    } else {
      esc[0] = (char)c;
      esc[1] = '\0';
    }
    if (!buf_str(b, esc)) return false;
  }
  return buf_str(b, "\"");
}

/* ---------- output ---------- */

/* The process's buffers live here so that nothing is unreachable at exit (leak checkers agree). */
static buf_t g_stdin, g_request, g_reply;

static bool write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 2;
  line[len++] = '\n';
  (void)write_all(2, line, len);
}

/* Prints the spec's error structure on stdout and returns the exit status (1). */
static int fail(const char *cni_version, int code, const char *msg, const char *details) {
  buf_t out = {0};
  char num[16];
  snprintf(num, sizeof num, "%d", code);
  bool ok = buf_str(&out, "{\"cniVersion\":") && buf_json_string(&out, cni_version, strlen(cni_version)) &&
            buf_str(&out, ",\"code\":") && buf_str(&out, num) && buf_str(&out, ",\"msg\":") &&
            buf_json_string(&out, msg, strlen(msg));
  if (ok && details && *details) ok = buf_str(&out, ",\"details\":") && buf_json_string(&out, details, strlen(details));
  ok = ok && buf_str(&out, "}");
  static const char OOM[] = "{\"cniVersion\":\"1.0.0\",\"code\":5,\"msg\":\"ambit-cni: out of memory\"}";
  if (ok) (void)write_all(1, out.data, out.len);
  else (void)write_all(1, OOM, sizeof OOM - 1);
  log_line("ambit-cni: %s failed (code %d): %s%s%s", getenv("CNI_COMMAND") ? getenv("CNI_COMMAND") : "?", code, msg,
           details && *details ? ": " : "", details && *details ? details : "");
  free(out.data);
  return 1;
}

/* ---------- the JSON scanner ---------- */

typedef struct {
  const char *p, *end;
  int depth;
} scan_t;

typedef struct {
  const char *start;
  size_t len;
} span_t;

/* What the shim reads of the network configuration. Strings are raw spans inside the quotes. */
typedef struct {
  bool valid;     /* the whole input is one JSON value */
  bool is_object; /* ... and it is an object */
  bool has_version;
  span_t version; /* cniVersion, when a string */
  bool has_socket;
  span_t socket; /* agentSocket, when a string */
  bool has_timeout;
  long timeout_ms; /* timeoutMs, when an integer in range */
  span_t exclude;  /* excludeNamespaces, when an array (raw, brackets included) */
  span_t prev;     /* prevResult, when an object (raw, braces included) */
} config_t;

static void skip_ws(scan_t *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* A string at s->p ('"'); sets *inner to the bytes between the quotes (escapes left as they are). */
static bool scan_string(scan_t *s, span_t *inner) {
  if (s->p >= s->end || *s->p != '"') return false;
  const char *start = ++s->p;
  while (s->p < s->end) {
    unsigned char c = (unsigned char)*s->p;
    if (c == '"') {
      if (inner) *inner = (span_t){start, (size_t)(s->p - start)};
      s->p++;
      return true;
    }
    if (c < 0x20) return false;
    if (c == '\\') {
      if (++s->p >= s->end) return false;
      char e = *s->p;
      if (e == 'u') {
        if (s->end - s->p < 5) return false;
        for (int i = 1; i <= 4; i++)
          if (!is_hex(s->p[i])) return false;
        s->p += 4;
      } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
        return false;
      }
    }
    s->p++;
  }
  return false;
}

static bool scan_digits(scan_t *s) {
  const char *start = s->p;
  while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
  return s->p > start;
}

/* RFC 8259 number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool scan_number(scan_t *s) {
  if (s->p < s->end && *s->p == '-') s->p++;
  if (s->p >= s->end) return false;
  if (*s->p == '0') s->p++;
  else if (!scan_digits(s)) return false;
  if (s->p < s->end && *s->p == '.') {
    s->p++;
    if (!scan_digits(s)) return false;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    s->p++;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
    if (!scan_digits(s)) return false;
  }
  return true;
}

static bool scan_literal(scan_t *s, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return false;
  s->p += n;
  return true;
}

static bool scan_value(scan_t *s);

static bool scan_container(scan_t *s, char open, char close) {
  if (++s->depth > MAX_JSON_DEPTH) return false;
  s->p++; /* the opening bracket */
  skip_ws(s);
  if (s->p < s->end && *s->p == close) {
    s->p++;
    s->depth--;
    return true;
  }
  for (;;) {
    if (open == '{') {
      if (!scan_string(s, NULL)) return false;
      skip_ws(s);
      if (s->p >= s->end || *s->p != ':') return false;
      s->p++;
    }
    if (!scan_value(s)) return false;
    skip_ws(s);
    if (s->p >= s->end) return false;
    if (*s->p == ',') {
      s->p++;
      skip_ws(s);
      continue;
    }
    if (*s->p != close) return false;
    s->p++;
    s->depth--;
    return true;
  }
}

/* One value with surrounding whitespace. */
static bool scan_value(scan_t *s) {
  skip_ws(s);
  if (s->p >= s->end) return false;
  bool ok;
  switch (*s->p) {
    case '{': ok = scan_container(s, '{', '}'); break;
    case '[': ok = scan_container(s, '[', ']'); break;
    case '"': ok = scan_string(s, NULL); break;
    case 't': ok = scan_literal(s, "true"); break;
    case 'f': ok = scan_literal(s, "false"); break;
    case 'n': ok = scan_literal(s, "null"); break;
    default: ok = scan_number(s); break;
  }
  if (ok) skip_ws(s);
  return ok;
}

static bool span_is(span_t sp, const char *lit) { return sp.len == strlen(lit) && memcmp(sp.start, lit, sp.len) == 0; }

/* An integer number span in [1, max], as JSON.parse + Number.isInteger would accept it ("30000", "3e4"). */
static bool span_to_timeout(span_t sp, long *out) {
  char tmp[32];
  if (sp.len == 0 || sp.len >= sizeof tmp) return false;
  memcpy(tmp, sp.start, sp.len);
  tmp[sp.len] = '\0';
  char *end = NULL;
  errno = 0;
  double v = strtod(tmp, &end);
  if (errno || !end || *end || v < 1 || v > (double)MAX_TIMEOUT_MS || v != (double)(long)v) return false;
  *out = (long)v;
  return true;
}

/* Scans the whole config; records the top-level keys the shim uses (the last occurrence wins, as in JSON.parse). */
static config_t scan_config(const char *data, size_t len) {
  config_t c = {0};
  scan_t s = {data, data + len, 0};
  skip_ws(&s);
  if (s.p < s.end && *s.p == '{') {
    /* Walk the top-level object by hand to see its keys; nested values go through scan_value. */
    s.p++;
    s.depth = 1;
    skip_ws(&s);
    bool ok = true;
    if (s.p < s.end && *s.p == '}') {
      s.p++;
    } else {
      for (;;) {
        span_t key;
        if (!scan_string(&s, &key)) { ok = false; break; }
        skip_ws(&s);
        if (s.p >= s.end || *s.p != ':') { ok = false; break; }
        s.p++;
        skip_ws(&s);
        const char *vstart = s.p;
        if (!scan_value(&s)) { ok = false; break; }
        const char *vend = s.p;
        while (vend > vstart && (vend[-1] == ' ' || vend[-1] == '\t' || vend[-1] == '\n' || vend[-1] == '\r')) vend--;
        span_t raw = {vstart, (size_t)(vend - vstart)};
        bool is_str = raw.len >= 2 && vstart[0] == '"';
        span_t inner = is_str ? (span_t){vstart + 1, raw.len - 2} : (span_t){0};
        if (span_is(key, "cniVersion")) {
          c.has_version = is_str;
          c.version = inner;
        } else if (span_is(key, "agentSocket")) {
          c.has_socket = is_str;
          c.socket = inner;
        } else if (span_is(key, "timeoutMs")) {
          c.has_timeout = span_to_timeout(raw, &c.timeout_ms);
        } else if (span_is(key, "excludeNamespaces")) {
          c.exclude = raw.len && vstart[0] == '[' ? raw : (span_t){0};
        } else if (span_is(key, "prevResult")) {
          c.prev = raw.len && vstart[0] == '{' ? raw : (span_t){0};
        }
        if (s.p >= s.end) { ok = false; break; }
        if (*s.p == ',') { s.p++; skip_ws(&s); continue; }
        if (*s.p == '}') { s.p++; break; }
        ok = false;
        break;
      }
    }
    skip_ws(&s);
    c.valid = ok && s.p == s.end;
    c.is_object = c.valid;
  } else {
    c.valid = scan_value(&s) && s.p == s.end;
  }
  if (!c.is_object) {
    c.has_version = c.has_socket = c.has_timeout = false;
    c.exclude = c.prev = (span_t){0};
  }
  return c;
}

/* A JSON string's raw inner bytes decoded into out (NUL-terminated); false when it has escapes we
 * do not decode (\u) or does not fit. Names we compare (versions, namespaces, paths) never need them. */
static bool unescape_simple(span_t sp, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < sp.len; i++) {
    char c = sp.start[i];
    if (c == '\\') {
      if (++i >= sp.len) return false;
      switch (sp.start[i]) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        default: return false;
      }
    }
    if (c == '\0' || n + 1 >= cap) return false;
    out[n++] = c;
  }
  out[n] = '\0';
  return true;
}

/* Whether the excludeNamespaces array (raw span) holds exactly `ns`. */
static bool excluded(span_t arr, const char *ns) {
  if (!arr.len || !ns || !*ns) return false;
  scan_t s = {arr.start + 1, arr.start + arr.len, 1};
  for (;;) {
    skip_ws(&s);
    if (s.p >= s.end || *s.p == ']') return false;
    if (*s.p == '"') {
      span_t inner;
      char name[256];
      if (!scan_string(&s, &inner)) return false;
      if (unescape_simple(inner, name, sizeof name) && strcmp(name, ns) == 0) return true;
    } else if (!scan_value(&s)) {
      return false;
    }
    skip_ws(&s);
    if (s.p < s.end && *s.p == ',') s.p++;
  }
}

/* K8S_POD_NAMESPACE from CNI_ARGS ("K=V;K=V"), copied into out; "" when absent. */
static void pod_namespace(const char *args, char *out, size_t cap) {
  out[0] = '\0';
  static const char key[] = "K8S_POD_NAMESPACE=";
  for (const char *p = args; p && *p;) {
    const char *semi = strchr(p, ';');
    size_t len = semi ? (size_t)(semi - p) : strlen(p);
    if (len > sizeof key - 1 && memcmp(p, key, sizeof key - 1) == 0) {
      size_t vlen = len - (sizeof key - 1);
      if (vlen < cap && !memchr(p + sizeof key - 1, '=', vlen)) {
        memcpy(out, p + sizeof key - 1, vlen);
        out[vlen] = '\0';
      }
    }
    p = semi ? semi + 1 : NULL;
  }
}

/* ---------- time ---------- */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until the deadline, at least 0, at most INT_MAX-ish for poll(). */
static int left_ms(long long deadline) {
  long long d = deadline - now_ms();
  return d < 0 ? 0 : d > 0x7fffffff ? 0x7fffffff : (int)d;
}

/* ---------- stdin ---------- */

/* Reads all of stdin into g_stdin. 0 ok, else an errno-like reason (EFBIG: too large). */
static int read_stdin(void) {
  if (isatty(0)) return 0; /* someone running VERSION by hand */
  char chunk[65536];
  for (;;) {
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno == EBADF ? 0 : errno; /* no stdin at all reads as empty */
    if (r == 0) return 0;
    if (!buf_add(&g_stdin, chunk, (size_t)r, MAX_STDIN)) return g_stdin.len + (size_t)r > MAX_STDIN ? EFBIG : ENOMEM;
  }
}

/* ---------- talking to the agent ---------- */

typedef enum { AGENT_OK, AGENT_UNREACHABLE, AGENT_TIMEOUT, AGENT_BROKEN } agent_status_t;

typedef struct {
  agent_status_t status;
  char reason[512]; /* for everything but AGENT_OK */
  int http_status;
  int exit_code;     /* Cni-Exit-Code, -1 when absent or invalid */
  span_t body;       /* inside g_reply */
  span_t log;        /* Cni-Log, percent-encoded, inside g_reply */
} agent_reply_t;

static void set_reason(agent_reply_t *r, agent_status_t st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_reason(agent_reply_t *r, agent_status_t st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->reason, sizeof r->reason, fmt, ap);
  va_end(ap);
  r->status = st;
}

/*
 * Connects to "@name" (abstract) or a path, within the deadline. Abstract names are tried with
 * their exact length (as curl, socat, Go bind them) and then padded to the whole sun_path, which is
 * how Node 20 (libuv) binds them. Returns the fd, or -1 with errno set.
 */
static int connect_agent(const char *where, long long deadline) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t n = strlen(where);
  socklen_t lens[2];
  int nlens;
  if (where[0] == '@') {
    if (n < 2) { errno = EINVAL; return -1; }
    if (n - 1 > sizeof sa.sun_path - 1) { errno = ENAMETOOLONG; return -1; }
    memcpy(sa.sun_path + 1, where + 1, n - 1);
    lens[0] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    lens[1] = (socklen_t)sizeof sa;
    nlens = lens[0] == lens[1] ? 1 : 2;
  } else {
    if (n >= sizeof sa.sun_path) { errno = ENAMETOOLONG; return -1; }
    memcpy(sa.sun_path, where, n);
    lens[0] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    nlens = 1;
  }
  int err = ECONNREFUSED;
  for (int i = 0; i < nlens; i++) {
    for (;;) {
      int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) return -1;
      if (connect(fd, (struct sockaddr *)&sa, lens[i]) == 0) return fd;
      err = errno;
      close(fd);
      /* EAGAIN: the listener's backlog is full (the agent is busy); retry until the deadline. */
      if (err == EAGAIN && left_ms(deadline) > 0) {
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
        continue;
      }
      if (err == EAGAIN) err = ETIMEDOUT;
      break;
    }
    if (err != ECONNREFUSED) break; /* only a missing abstract name is worth the second form */
  }
  errno = err;
  return -1;
}

/* Bytes outside visible ASCII, and '%', as %XX (the protocol's header value encoding). */
static bool buf_percent(buf_t *b, const char *v) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    char enc[4] = {(char)*p, 0, 0, 0};
    if (*p <= 0x20 || *p >= 0x7f || *p == '%') {
      enc[0] = '%';
      enc[1] = hex[*p >> 4];
      enc[2] = hex[*p & 15];
    }
    if (!buf_add(b, enc, strlen(enc), MAX_REPLY)) return false;
  }
  return true;
}

static bool build_request(const char *body, size_t body_len) {
  char num[32];
  snprintf(num, sizeof num, "%zu", body_len);
  bool ok = buf_str(&g_request, "POST " RUN_PATH " HTTP/1.1\r\nHost: ambit-agent\r\nUser-Agent: ambit-cni\r\n"
                                "Content-Type: application/json\r\nConnection: close\r\nContent-Length: ") &&
            buf_str(&g_request, num) && buf_str(&g_request, "\r\n");
  for (size_t i = 0; ok && i < N_ENV_HEADERS; i++) {
    const char *v = getenv(ENV_HEADERS[i].env);
    if (!v) continue; /* absent variable -> absent header ("" stays an empty header) */
    ok = buf_str(&g_request, ENV_HEADERS[i].header) && buf_str(&g_request, ": ") && buf_percent(&g_request, v) &&
         buf_str(&g_request, "\r\n");
  }
  return ok && buf_str(&g_request, "\r\n") && buf_add(&g_request, body, body_len, SIZE_MAX / 4);
}

static bool send_all(int fd, const char *p, size_t n, long long deadline, agent_reply_t *r) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      struct pollfd pfd = {fd, POLLOUT, 0};
      int t = left_ms(deadline);
      if (t == 0 || poll(&pfd, 1, t) == 0) {
        set_reason(r, AGENT_TIMEOUT, "sending the request timed out");
        return false;
      }
      continue;
    }
    set_reason(r, AGENT_BROKEN, "sending the request failed: %s", strerror(errno));
    return false;
  }
  return true;
}

/* Case-insensitive header name match at the start of a line: "Name:". */
static bool header_is(const char *line, size_t len, const char *name) {
  size_t n = strlen(name);
  return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

static span_t header_value(const char *line, size_t len, const char *name) {
  size_t i = strlen(name) + 1;
  while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
  size_t end = len;
  while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t')) end--;
  return (span_t){line + i, end - i};
}

/*
 * Parses g_reply once the header block is complete. Returns 1 when the reply is complete, 0 when
 * more bytes are needed, -1 when it is malformed (reason set).
 */
static int parse_reply(agent_reply_t *r, bool eof) {
  char *hdr_end = g_reply.data ? memmem(g_reply.data, g_reply.len, "\r\n\r\n", 4) : NULL;
  if (!hdr_end) {
    if (eof) set_reason(r, AGENT_BROKEN, "the agent closed the connection before a complete answer (%zu bytes)", g_reply.len);
    return eof ? -1 : 0;
  }
  size_t hdr_len = (size_t)(hdr_end - g_reply.data);
  const char *line = g_reply.data;
  const char *nl = memmem(line, hdr_len, "\r\n", 2);
  size_t first_len = nl ? (size_t)(nl - line) : hdr_len;
  int status = 0;
  if (first_len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || sscanf(line + 9, "%3d", &status) != 1) {
    set_reason(r, AGENT_BROKEN, "the agent's answer is not HTTP");
    return -1;
  }
  r->http_status = status;
  r->exit_code = -1;
  long long content_length = -1;
  bool chunked = false;
  const char *p = nl ? nl + 2 : hdr_end;
  while (p < hdr_end) {
    const char *e = memmem(p, (size_t)(hdr_end - p) + 2, "\r\n", 2);
    size_t len = (size_t)(e - p);
    if (header_is(p, len, "Content-Length")) {
      span_t v = header_value(p, len, "Content-Length");
      content_length = 0;
      for (size_t i = 0; i < v.len; i++) {
        if (v.start[i] < '0' || v.start[i] > '9' || content_length > (long long)MAX_REPLY) { content_length = -2; break; }
        content_length = content_length * 10 + (v.start[i] - '0');
      }
      if (v.len == 0) content_length = -2;
    } else if (header_is(p, len, "Transfer-Encoding")) {
      chunked = true;
    } else if (header_is(p, len, "Cni-Exit-Code")) {
      span_t v = header_value(p, len, "Cni-Exit-Code");
      r->exit_code = span_is(v, "0") ? 0 : span_is(v, "1") ? 1 : -1;
    } else if (header_is(p, len, "Cni-Log")) {
      r->log = header_value(p, len, "Cni-Log");
    }
    p = e + 2;
  }
  if (chunked || content_length == -2) {
    set_reason(r, AGENT_BROKEN, "the agent's answer has a framing this plugin does not read");
    return -1;
  }
  size_t body_start = hdr_len + 4;
  size_t have = g_reply.len - body_start;
  if (content_length >= 0) {
    if (have < (size_t)content_length) {
      if (eof) set_reason(r, AGENT_BROKEN, "the agent closed the connection after %zu of %lld body bytes", have, content_length);
      return eof ? -1 : 0;
    }
    have = (size_t)content_length;
  } else if (!eof) {
    return 0; /* no length: the body ends with the connection (we asked for Connection: close) */
  }
  r->body = (span_t){g_reply.data + body_start, have};
  return 1;
}

static void ask_agent(const char *where, long long deadline, agent_reply_t *r) {
  int fd = connect_agent(where, deadline);
  if (fd < 0) {
    set_reason(r, errno == ETIMEDOUT ? AGENT_TIMEOUT : AGENT_UNREACHABLE, "%s: %s", where, strerror(errno));
    return;
  }
  if (send_all(fd, g_request.data, g_request.len, deadline, r)) {
    char chunk[65536];
    for (;;) {
      ssize_t n = recv(fd, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int t = left_ms(deadline);
        if (t == 0 || poll(&pfd, 1, t) == 0) {
          set_reason(r, AGENT_TIMEOUT, "no answer");
          break;
        }
        continue;
      }
      if (n < 0) {
        set_reason(r, AGENT_BROKEN, "reading the answer failed: %s", strerror(errno));
        break;
      }
      if (n > 0 && !buf_add(&g_reply, chunk, (size_t)n, MAX_REPLY)) {
        set_reason(r, AGENT_BROKEN, "the agent's answer is larger than %u bytes", MAX_REPLY);
        break;
      }
      int done = parse_reply(r, n == 0);
      if (done != 0) {
        if (done > 0) r->status = AGENT_OK;
        break;
      }
    }
  }
  close(fd);
}

/* Writes the Cni-Log header (percent-encoded) to stderr, decoded. */
static void relay_log(span_t v) {
  if (!v.len) return;
  char *out = malloc(v.len + 2);
  if (!out) return;
  size_t n = 0;
  for (size_t i = 0; i < v.len; i++) {
    if (v.start[i] == '%' && i + 2 < v.len && is_hex(v.start[i + 1]) && is_hex(v.start[i + 2])) {
      char h[3] = {v.start[i + 1], v.start[i + 2], 0};
      out[n++] = (char)strtol(h, NULL, 16);
      i += 2;
    } else {
      out[n++] = v.start[i];
    }
  }
  if (n && out[n - 1] != '\n') out[n++] = '\n';
  (void)write_all(2, out, n);
  free(out);
}

/* ---------- commands the shim answers itself ---------- */

static const char *supported(span_t v) {
  for (size_t i = 0; i < N_VERSIONS; i++)
    if (span_is(v, SUPPORTED_VERSIONS[i])) return SUPPORTED_VERSIONS[i];
  return NULL;
}

static int answer_version(const config_t *c) {
  const char *v = c->has_version ? supported(c->version) : NULL;
  buf_t out = {0};
  bool ok = buf_str(&out, "{\"cniVersion\":\"") && buf_str(&out, v ? v : LATEST_VERSION) &&
            buf_str(&out, "\",\"supportedVersions\":[");
  for (size_t i = 0; ok && i < N_VERSIONS; i++)
    ok = buf_str(&out, i ? ",\"" : "\"") && buf_str(&out, SUPPORTED_VERSIONS[i]) && buf_str(&out, "\"");
  ok = ok && buf_str(&out, "]}");
  int rc = ok && write_all(1, out.data, out.len) ? 0 : 1;
  free(out.data);
  return rc;
}

/* What the runtime gets when the agent did not answer (see the header comment). */
static int without_agent(const char *command, const config_t *c, const char *version, const agent_reply_t *r,
                         long timeout_ms) {
  const char *kind = r->status == AGENT_UNREACHABLE ? "is not reachable on this node"
                     : r->status == AGENT_TIMEOUT  ? "did not answer in time"
                                                    : "broke off its answer";
  if (strcmp(command, "DEL") == 0) {
    log_line("ambit-cni: DEL: ambit-agent %s (%s); the agent cleans up deleted pods when it reconciles", kind, r->reason);
    return 0;
  }
  if (!c->valid || !c->is_object)
    return fail(version, CODE_DECODING, "the network configuration on stdin is not a valid JSON object",
                "ambit-agent, which reports the details, is not reachable either");
  if (strcmp(command, "ADD") == 0 && c->prev.len && c->has_version && supported(c->version)) {
    char ns[256];
    pod_namespace(getenv("CNI_ARGS"), ns, sizeof ns);
    /* As the agent would: a sandbox that is not a pod, or one of an excluded namespace, is not ours. */
    if (!ns[0] || excluded(c->exclude, ns)) {
      log_line("ambit-cni: ADD passed through: %s%s (ambit-agent %s)", ns[0] ? "namespace is excluded in the network configuration: " : "not a Kubernetes pod", ns, kind);
      return write_all(1, c->prev.start, c->prev.len) ? 0 : 1;
    }
  }
  char msg[1024];
  if (r->status == AGENT_UNREACHABLE) {
    snprintf(msg, sizeof msg,
             "ambit-agent is not reachable on this node (%s): new pods in enrolled namespaces wait until it runs; " KUBECTL_HINT,
             r->reason);
  } else if (r->status == AGENT_TIMEOUT) {
    snprintf(msg, sizeof msg,
             "ambit-agent did not answer %s within %ld ms (timeoutMs); the runtime retries: " KUBECTL_HINT, command, timeout_ms);
  } else {
    snprintf(msg, sizeof msg, "the connection to ambit-agent broke during %s (%s); the runtime retries: " KUBECTL_HINT, command,
             r->reason);
  }
  return fail(version, CODE_TRY_AGAIN, msg, "");
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const char *command = getenv("CNI_COMMAND");

  int err = read_stdin();
  config_t conf = scan_config(g_stdin.data ? g_stdin.data : "", g_stdin.len);
  /* The error structure echoes the config's cniVersion when it has one. */
  char version[64] = LATEST_VERSION;
  if (!conf.has_version || !conf.version.len || !unescape_simple(conf.version, version, sizeof version))
    snprintf(version, sizeof version, "%s", LATEST_VERSION);
  if (err) {
    return fail(LATEST_VERSION, CODE_IO, "could not read the network configuration from stdin",
                err == EFBIG ? "more than 4 MiB on stdin" : strerror(err));
  }
  if (command && strcmp(command, "VERSION") == 0) return answer_version(&conf);

  char where[sizeof(((struct sockaddr_un *)0)->sun_path) + 1] = DEFAULT_SOCKET;
  if (conf.has_socket && !unescape_simple(conf.socket, where, sizeof where)) snprintf(where, sizeof where, "%s", DEFAULT_SOCKET);
  if (where[0] != '/' && where[0] != '@') snprintf(where, sizeof where, "%s", DEFAULT_SOCKET); /* the agent reports it */
  long timeout_ms = conf.has_timeout ? conf.timeout_ms : DEFAULT_TIMEOUT_MS;
  long long deadline = now_ms() + timeout_ms;

  agent_reply_t reply = {.status = AGENT_BROKEN, .exit_code = -1};
  if (!build_request(g_stdin.data ? g_stdin.data : "", g_stdin.len))
    return fail(version, CODE_IO, "ambit-cni: out of memory building the request", "");
  ask_agent(where, deadline, &reply);

  if (reply.status != AGENT_OK) {
    bool known = command && (!strcmp(command, "ADD") || !strcmp(command, "DEL") || !strcmp(command, "CHECK"));
    if (!known)
      return fail(version, CODE_INVALID_ENV, command ? "CNI_COMMAND is not supported" : "CNI_COMMAND is not set",
                  "ambit-cni implements ADD, DEL, CHECK, VERSION");
    return without_agent(command, &conf, version, &reply, timeout_ms);
  }
  relay_log(reply.log);
  if (reply.http_status != 200 || reply.exit_code < 0) {
    char details[512];
    int n = (int)(reply.body.len < 300 ? reply.body.len : 300);
    snprintf(details, sizeof details, "HTTP %d: %.*s", reply.http_status, n, reply.body.start ? reply.body.start : "");
    if (command && strcmp(command, "DEL") == 0) {
      log_line("ambit-cni: DEL: ambit-agent refused the request (%s); it cleans up deleted pods when it reconciles", details);
      return 0;
    }
    return fail(version, CODE_AGENT_PROTOCOL,
                reply.http_status != 200 ? "ambit-agent refused the request (are ambit-cni and ambit-agent the same version?)"
                                         : "ambit-agent's answer was not understood (are ambit-cni and ambit-agent the same version?)",
                details);
  }
  if (!write_all(1, reply.body.start, reply.body.len)) return 1;
  return reply.exit_code;
}
