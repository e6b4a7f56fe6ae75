// socket/bind/listen/accept4/getpeername/getsockopt/poll/send/shutdown/close through bun:ffi.
// Only imported by ./native-socket.ts when running under bun. Every descriptor we create is
// non-blocking and close-on-exec; every wait goes through poll(2) with a bounded timeout.
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import * as fs from "node:fs";
import * as nodePath from "node:path";
import type { UnixConnection, UnixListener, UnixSockets } from "./unix-socket.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const POLLIN = 0x1;
const POLLOUT = 0x4;
const MSG_NOSIGNAL = 0x4000;
const SHUT_RDWR = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const EINTR = 4;
const EAGAIN = 11;
/** sockaddr_un: sa_family_t + sun_path[108]. */
const SOCKADDR_UN_BYTES = 110;
const SUN_PATH_MAX = 107;
const BACKLOG = 16;
/** sd_listen_fds(3): the first passed descriptor. */
const SD_LISTEN_FDS_START = 3;

function libc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    accept4: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    getpeername: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
    send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
    shutdown: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
}

export function bunUnixSockets(): UnixSockets {
  const { symbols: c } = libc();
  const errno = () => read.i32(c.__errno_location()!, 0);
  const fail = (what: string): never => {
    throw new Error(`${what} failed (errno ${errno()})`);
  };

  /** poll(2) one descriptor; true when `events` is ready, false on timeout. */
  const waitFor = (fd: number, events: number, timeoutMs: number): boolean => {
    const pfd = new Int32Array(2);
    pfd[0] = fd;
    pfd[1] = events; // short events | short revents << 16 (little-endian)
    for (;;) {
      const n = c.poll(ptr(pfd), 1, Math.max(0, Math.min(timeoutMs, 2 ** 31 - 1)));
      if (n >= 0) return n > 0;
      if (errno() !== EINTR) fail("poll");
    }
  };

  const connection = (fd: number): UnixConnection => {
    const addr = new Uint8Array(SOCKADDR_UN_BYTES);
    const len = new Uint32Array([SOCKADDR_UN_BYTES]);
    if (c.getpeername(fd, ptr(addr), ptr(len)) !== 0) {
      c.close(fd);
      fail("getpeername");
    }
    const cred = new Uint32Array(3);
    const credLen = new Uint32Array([12]);
    if (c.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, ptr(cred), ptr(credLen)) !== 0) {
      c.close(fd);
      fail("getsockopt(SO_PEERCRED)");
    }
    let open = true;
    return {
      // An unnamed peer has only the family field (addrlen 2).
      peerAddress: addr.slice(2, Math.max(2, Math.min(len[0]!, SOCKADDR_UN_BYTES))),
      peerUid: cred[1]!,
      send(bytes, timeoutMs) {
        const until = Date.now() + timeoutMs;
        let off = 0;
        while (off < bytes.length) {
          const n = Number(c.send(fd, ptr(bytes, off), bytes.length - off, MSG_NOSIGNAL));
          if (n > 0) off += n;
          else if (n < 0 && (errno() === EAGAIN || errno() === EINTR)) {
            if (!waitFor(fd, POLLOUT, until - Date.now())) throw new Error("the peer does not read (send timed out)");
          } else fail("send");
        }
      },
      close() {
        if (open) c.close(fd);
        open = false;
      },
    };
  };

  const listener = (fd: number): UnixListener => {
    let open = true;
    return {
      accept(timeoutMs) {
        if (!waitFor(fd, POLLIN, timeoutMs)) return undefined;
        const cfd = c.accept4(fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
          if (errno() === EAGAIN || errno() === EINTR) return undefined; // the peer went away in between
          fail("accept4");
        }
        return connection(cfd);
      },
      close() {
        if (!open) return;
        open = false;
        c.shutdown(fd, SHUT_RDWR);
        c.close(fd);
      },
    };
  };

  return {
    fromSystemd(env, pid) {
      if (env.LISTEN_PID !== String(pid) || env.LISTEN_FDS !== "1") return undefined;
      const fd = SD_LISTEN_FDS_START;
      const flags = c.fcntl(fd, F_GETFL, 0);
      if (flags < 0 || c.fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) fail("fcntl(O_NONBLOCK) on the passed socket");
      return listener(fd);
    },
    listen(path) {
      const name = Buffer.from(path, "utf8");
      if (name.length > SUN_PATH_MAX) throw new Error(`socket path ${path} is longer than ${SUN_PATH_MAX} bytes`);
      fs.mkdirSync(nodePath.dirname(path), { recursive: true, mode: 0o700 });
      if (fs.lstatSync(path, { throwIfNoEntry: false })?.isSocket()) fs.rmSync(path); // a stale socket of ours
      const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) fail("socket(AF_UNIX)");
      const addr = new Uint8Array(SOCKADDR_UN_BYTES);
      addr[0] = AF_UNIX;
      addr.set(name, 2);
      const oldMask = process.umask(0o177); // the socket file is created 0600
      try {
        if (c.bind(fd, ptr(addr), 2 + name.length + 1) !== 0) {
          const e = errno();
          c.close(fd);
          throw new Error(`bind(${path}) failed (errno ${e})`);
        }
      } finally {
        process.umask(oldMask);
      }
      if (c.listen(fd, BACKLOG) !== 0) {
        c.close(fd);
        fail("listen");
      }
      return listener(fd);
    },
  };
}
