/**
 * HTTP/2 settings of HBONE sessions, shared by both ends, with the reasons for each value.
 * Measured with bench/hbone-micro.ts (BENCH_STREAM_WINDOW / BENCH_CONN_WINDOW / BENCH_FRAME override them).
 */
import type http2 from 'node:http2';

const KiB = 1024;
const MiB = 1024 * KiB;

export interface H2Tuning {
  /** SETTINGS_INITIAL_WINDOW_SIZE: how much one tunnel may have in flight before a WINDOW_UPDATE */
  streamWindow: number;
  /** connection-level receive window (setLocalWindowSize), shared by all tunnels of a session */
  connectionWindow: number;
  /** SETTINGS_MAX_FRAME_SIZE we accept: fewer, larger DATA frames mean fewer callbacks into JS */
  maxFrameSize: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS we accept (server) */
  maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: a CONNECT needs ~100 bytes; anything near this is abuse */
  maxHeaderListSize: number;
  /** Node's per-session memory cap (MB); beyond it new streams are refused with ENHANCE_YOUR_CALM */
  maxSessionMemoryMb: number;
}

/**
 * Defaults. The per-stream window bounds what one slow application can make us buffer (a receive
 * window is only reopened as the application reads), so it is kept moderate; the connection window
 * is larger so several busy tunnels on one session do not starve each other.
 */
export const DEFAULT_TUNING: H2Tuning = {
  streamWindow: 4 * MiB,
  connectionWindow: 16 * MiB,
  maxFrameSize: 64 * KiB,
  maxConcurrentStreams: 1000,
  maxHeaderListSize: 8 * KiB,
  maxSessionMemoryMb: 64,
};

export function h2Settings(t: H2Tuning): http2.Settings {
  return {
    enablePush: false,
    initialWindowSize: t.streamWindow,
    maxFrameSize: t.maxFrameSize,
    maxConcurrentStreams: t.maxConcurrentStreams,
    maxHeaderListSize: t.maxHeaderListSize,
  };
}
