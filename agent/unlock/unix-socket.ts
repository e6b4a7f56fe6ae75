// The AF_UNIX seam of the mode B key server (key-server.ts). systemd-cryptsetup names the volume
// it wants in the abstract address its client socket is bound to (docs/spec/boot.md §1.1
// "mode B"), and neither node nor bun's net module exposes a unix peer's address: getpeername(2)
// and SO_PEERCRED come from bun:ffi (unix-socket-bun.ts), loaded through native-socket.ts.

/** One accepted connection. */
export interface UnixConnection {
  /** The peer's sun_path bytes as getpeername(2) returned them (abstract: a leading NUL). */
  peerAddress: Uint8Array;
  /** SO_PEERCRED uid of the connecting process. */
  peerUid: number;
  /** Write all of `bytes` (a short key: one send, bounded by the deadline). */
  send(bytes: Uint8Array, timeoutMs: number): void;
  close(): void;
}

export interface UnixListener {
  /** Wait up to `timeoutMs` for a connection; undefined when none came. */
  accept(timeoutMs: number): UnixConnection | undefined;
  /**
   * Refuse all further connections (shutdown(2) of the listening socket: a later connect gets
   * ECONNREFUSED, so systemd-cryptsetup fails at once instead of waiting on a socket nobody
   * serves) and close our descriptor.
   */
  close(): void;
}

export interface UnixSockets {
  /** The socket systemd passed (LISTEN_FDS/LISTEN_PID, sd_listen_fds(3)), or undefined. */
  fromSystemd(env: NodeJS.ProcessEnv, pid: number): UnixListener | undefined;
  /** Create, bind (mode 0600) and listen on `path` ourselves (no socket activation). */
  listen(path: string): UnixListener;
}
