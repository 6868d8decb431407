/**
 * Copies bytes both ways between a tunnel stream (an HTTP/2 CONNECT stream) and a local TCP
 * connection, counting them, with the TCP semantics RFC 9113 §8.5 asks of a CONNECT proxy:
 * - a FIN on one side becomes END_STREAM on the other (half-close), while the other direction
 *   keeps flowing;
 * - a reset or error on the TCP side becomes RST_STREAM(CONNECT_ERROR) on the tunnel, and an
 *   abnormal end of the tunnel stream becomes a TCP reset of the local connection, so neither
 *   side mistakes an abort for a complete response.
 *
 * The local socket must be created with `allowHalfOpen: true`, or Node ends its writable side as
 * soon as its readable side ends and the half-close cannot pass.
 */
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';

export interface RelayResult {
  /** bytes read from the tunnel and written to the local connection */
  fromTunnel: number;
  /** bytes read from the local connection and written to the tunnel */
  toTunnel: number;
  /** which side ended abnormally first (reset, error, destroyed before both directions finished) */
  aborted?: 'tunnel' | 'local';
  /** the first error seen, if any */
  error?: Error;
}

const { NGHTTP2_CONNECT_ERROR, NGHTTP2_NO_ERROR } = http2.constants;

/** Both directions finished normally: the peer's end received and our end flushed. */
function finishedCleanly(s: Duplex): boolean {
  return s.readableEnded && s.writableFinished;
}

function isHttp2Stream(s: Duplex): s is http2.Http2Stream {
  return 'rstCode' in s && 'session' in s;
}

/** Ends `s` abnormally in the way its peer will recognise as an abort. */
export function abortStream(s: Duplex): void {
  if (s.destroyed) return;
  if (isHttp2Stream(s)) {
    if (!s.closed) s.close(NGHTTP2_CONNECT_ERROR);
    return;
  }
  // Node 20: resetAndDestroy() while a shutdown (our FIN) is still pending leaves a request that
  // never completes, and the process then spins at exit. After end(), a plain destroy it is.
  const finPending = s.writableEnded && !s.writableFinished;
  if (s instanceof net.Socket && !s.connecting && !finPending && typeof s.resetAndDestroy === 'function') {
    try {
      s.resetAndDestroy();
      return;
    } catch {
      // not a TCP handle (e.g. a pipe): fall through to a plain destroy
    }
  }
  s.destroy();
}

/**
 * Copies src → dst with backpressure; returns a getter for the byte count.
 *
 * Writes to a TCP socket are corked until the event loop has handled everything the current poll
 * delivered (setImmediate: the check phase right after it). One 64 KiB TLS read holds four 16 KiB
 * records whose plaintext carries 16 KiB HTTP/2 DATA frames offset by their 9-byte headers, so the
 * stream sees about two chunks per record, each from its own callback out of the HTTP/2 session
 * (the tick and microtask queues drain between them, so nextTick would not batch them). Without
 * the cork each chunk became its own write(2) and its own trip through the pod's loopback TCP
 * (measured with strace: 8 KiB writes on average); corked, one read's chunks leave as one writev.
 * For the same reason the source pauses only once COALESCE_MAX_BYTES wait in the socket, not at
 * its 16 KiB high-water mark (which would cut every batch at 16 KiB); the HTTP/2 stream's receive
 * window still bounds what the peer can send meanwhile.
 */
const COALESCE_MAX_BYTES = 256 * 1024;

function pump(src: Duplex, dst: Duplex): () => number {
  let bytes = 0;
  let waiting = false;
  const resume = (): void => {
    waiting = false;
    src.resume();
  };
  const coalesce = dst instanceof net.Socket;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    dst.uncork();
  };
  src.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (coalesce && !corked) {
      corked = true;
      dst.cork();
      setImmediate(uncork);
    }
    // write() returning false arms 'drain', so pausing later (above the larger bound) still resumes.
    if (!dst.write(chunk) && !waiting && (!coalesce || dst.writableLength >= COALESCE_MAX_BYTES)) {
      waiting = true;
      src.pause();
      dst.once('drain', resume);
    }
  });
  // A socket handed over paused (the in-pod listeners accept with pauseOnConnect) does not flow on
  // a 'data' listener alone.
  src.resume();
  src.once('end', () => {
    // Node ends an HTTP/2 stream's readable side even when the peer reset it; a reset must reach
    // the other side as a reset, never as a clean FIN.
    if (isHttp2Stream(src) && src.rstCode !== undefined && src.rstCode !== NGHTTP2_NO_ERROR) {
      abortStream(dst);
      return;
    }
    if (!dst.destroyed && !dst.writableEnded) dst.end();
  });
  return () => bytes;
}

/** Relays until both streams are closed; never rejects. */
export function relay(tunnel: Duplex, local: Duplex): Promise<RelayResult> {
  return new Promise((resolve) => {
    let aborted: 'tunnel' | 'local' | undefined;
    let error: Error | undefined;
    let open = 2;
    const fromTunnel = pump(tunnel, local);
    const toTunnel = pump(local, tunnel);

    const onError = (err: Error): void => {
      error ??= err;
    };
    const onClose = (which: 'tunnel' | 'local', self: Duplex, other: Duplex): (() => void) => {
      let seen = false;
      return () => {
        if (seen) return;
        seen = true;
        closed(which, self, other);
      };
    };
    const closed = (which: 'tunnel' | 'local', self: Duplex, other: Duplex): void => {
      if (!finishedCleanly(self)) {
        aborted ??= which;
        abortStream(other);
      }
      open -= 1;
      if (open === 0) {
        const result: RelayResult = { fromTunnel: fromTunnel(), toTunnel: toTunnel() };
        if (aborted) result.aborted = aborted;
        if (error) result.error = error;
        resolve(result);
      }
    };
    tunnel.on('error', onError);
    local.on('error', onError);
    const tunnelClosed = onClose('tunnel', tunnel, local);
    const localClosed = onClose('local', local, tunnel);
    tunnel.once('close', tunnelClosed);
    local.once('close', localClosed);
    // Either may already be gone (destroyed between accept and relay): its 'close' may already have been emitted.
    if (tunnel.destroyed) tunnelClosed();
    if (local.destroyed) localClosed();
  });
}
