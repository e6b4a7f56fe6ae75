// A TPM transport moves one complete command to the TPM and returns one complete response.
// It frames and bounds bytes; it does not interpret response codes (the client does).

export interface TpmTransport {
  /** Human-readable target for messages ("/dev/tpmrm0", "swtpm 127.0.0.1:2321"). */
  readonly description: string;
  /** Send one command and return the whole response; `timeoutMs` bounds the wait where the transport can. */
  transmit(command: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  close(): void;
}
