/**
 * Joins two TCP connections into one: bytes flow both ways with backpressure, a half-close (FIN) on
 * one side becomes a FIN on the other while the opposite direction keeps flowing, a reset on one side
 * becomes a reset on the other, and an idle connection is ended after a while.
 *
 * Why it exists as its own piece: every forwarding strategy of the proxy (plaintext passthrough now,
 * the far end of an HBONE tunnel with issue 6) ends in "splice these two streams", and the TCP
 * semantics above are what applications notice when a proxy gets them wrong (a request/response
 * protocol that half-closes to mark the end of its request hangs; a reset turned into a clean FIN
 * looks like a complete response).
 *
 * Both sockets must be created with `allowHalfOpen: true`; otherwise Node ends the writable side as
 * soon as the readable side ends and a half-close cannot pass.
 */
import type net from 'node:net';

export interface SpliceOptions {
  /** End both sides after this long without a byte in either direction; 0 = never. */
  idleTimeoutMs: number;
  /**
   * Told the moment an abnormal end is known (reset, error, idle, aborted), before the sockets have
   * finished closing, so whoever records the connection on its downstream 'close' already sees why.
   */
  onEnd?: (end: SpliceEnd, error?: NodeJS.ErrnoException) => void;
}

/** How a spliced connection ended. */
export type SpliceEnd =
  | 'closed' // both directions finished normally (FIN each way)
  | 'reset' // one side reset (ECONNRESET / EPIPE); the other was reset too
  | 'error' // another socket error on one side; both were destroyed
  | 'idle' // idle timeout
  | 'aborted'; // destroyed from outside (the proxy's destroy(), a test)

export interface SpliceResult {
  end: SpliceEnd;
  /** Which side failed first, for 'reset' and 'error'. */
  side?: 'downstream' | 'upstream';
  error?: NodeJS.ErrnoException;
  /** Bytes read from the downstream (the connection's originator) and passed upstream. */
  bytesFromDownstream: number;
  /** Bytes read from upstream and passed downstream. */
  bytesFromUpstream: number;
}

const RESET_CODES = new Set(['ECONNRESET', 'EPIPE']);

/**
 * Splices `downstream` (accepted) and `upstream` (dialled; may still be connecting: writes queue
 * until it connects). Calls `done` exactly once, after both sockets are closed.
 */
export function splice(downstream: net.Socket, upstream: net.Socket, opts: SpliceOptions, done: (result: SpliceResult) => void): void {
  let end: SpliceEnd | undefined;
  let side: 'downstream' | 'upstream' | undefined;
  let error: NodeJS.ErrnoException | undefined;
  let open = 2;

  const fail = (which: 'downstream' | 'upstream', err: NodeJS.ErrnoException) => {
    if (end === undefined) {
      const reset = err.code !== undefined && RESET_CODES.has(err.code);
      end = reset ? 'reset' : 'error';
      side = which;
      error = err;
      opts.onEnd?.(end, err);
    }
    const other = which === 'downstream' ? upstream : downstream;
    if (end === 'reset') resetQuietly(other);
    else other.destroy();
  };
  const closed = () => {
    open -= 1;
    if (open > 0) {
      // One side is gone for good (both its directions finished, or it was destroyed). If that was
      // not a clean close, the other side must not linger half-open waiting for bytes that can
      // never come.
      if (end !== undefined) {
        if (end === 'reset') resetQuietly(upstream.destroyed ? downstream : upstream);
        else (upstream.destroyed ? downstream : upstream).destroy();
      }
      return;
    }
    downstream.setTimeout(0);
    done({
      end: end ?? 'closed',
      ...(side !== undefined ? { side } : {}),
      ...(error !== undefined ? { error } : {}),
      bytesFromDownstream: downstream.bytesRead,
      bytesFromUpstream: upstream.bytesRead,
    });
  };

  downstream.on('error', (err: NodeJS.ErrnoException) => fail('downstream', err));
  upstream.on('error', (err: NodeJS.ErrnoException) => fail('upstream', err));
  const onClose = (sock: net.Socket) => (hadError: boolean) => {
    if (!hadError && end === undefined && !cleanlyFinished(sock)) {
      end = 'aborted';
      opts.onEnd?.(end);
    }
    closed();
  };
  downstream.once('close', onClose(downstream));
  upstream.once('close', onClose(upstream));

  if (opts.idleTimeoutMs > 0) {
    // Reads and writes on the downstream socket both refresh Node's timer, so this one timer sees
    // activity in both directions.
    downstream.setTimeout(opts.idleTimeoutMs, () => {
      if (end === undefined) {
        end = 'idle';
        opts.onEnd?.(end);
      }
      downstream.destroy();
      upstream.destroy();
    });
  }

  // pipe() gives backpressure (pause the reader while the writer's buffer is full) and, with the
  // default end: true, turns the reader's 'end' (a FIN received) into end() (a FIN sent).
  downstream.pipe(upstream);
  upstream.pipe(downstream);
}

/** Both directions done normally: FIN received (readable ended) and our FIN sent (writable finished). */
function cleanlyFinished(sock: net.Socket): boolean {
  return sock.readableEnded && sock.writableFinished;
}

/** Sends a TCP RST (SO_LINGER 0) where Node can, else an ordinary destroy. */
function resetQuietly(sock: net.Socket): void {
  if (sock.destroyed) return;
  // Node defers a reset of a socket still connecting until it connects; we want it gone now.
  // Node 20: resetAndDestroy() while our FIN is still pending (pipe/end() ran) leaves a request that
  // never completes and the process spins at exit; a plain destroy is the safe reset then.
  if (sock.connecting || (sock.writableEnded && !sock.writableFinished)) {
    sock.destroy();
    return;
  }
  try {
    sock.resetAndDestroy();
  } catch {
    sock.destroy();
  }
}
