// RCAR sessions (docs/spec/kbs-protocol.md §1.2, §1.6): id = 32 lowercase hex, absolute expiry `timeoutMs` after
// /auth, never extended; Attested sessions keep the token. Expired sessions are dropped on read.
import * as crypto from "node:crypto";

export interface Session {
  id: string;
  tee: string;
  nonce: string;
  expiresAt: number;
  token?: string;
}

export const SESSION_COOKIE = "kbs-session-id";

export type Lookup = { session: Session } | { missing: true } | { expired: Session };

export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  constructor(public timeoutMs: number) {}

  create(tee: string, nonce: string, now = Date.now()): Session {
    const s: Session = { id: crypto.randomBytes(16).toString("hex"), tee, nonce, expiresAt: now + this.timeoutMs };
    this.sessions.set(s.id, s);
    return s;
  }

  lookup(id: string, now = Date.now()): Lookup {
    const s = this.sessions.get(id);
    if (!s) return { missing: true };
    if (s.expiresAt <= now) {
      this.sessions.delete(id);
      return { expired: s };
    }
    return { session: s };
  }

  /** Test fault: make every live session (or one) expired now. */
  expire(id?: string): void {
    for (const s of this.sessions.values()) if (id === undefined || s.id === id) s.expiresAt = 0;
  }

  get size(): number {
    return this.sessions.size;
  }
}

/** `Set-Cookie` as the Rust cookie crate renders Cookie::build(name, id).expires(t): only Expires. */
export function sessionCookie(s: Session): string {
  return `${SESSION_COOKIE}=${s.id}; Expires=${new Date(s.expiresAt).toUTCString()}`;
}

/** The kbs-session-id value from a Cookie header (first occurrence), if any. */
export function sessionIdFromCookie(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}
