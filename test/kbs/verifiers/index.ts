// Verifier registry of the test KBS. Adding a TEE is one line here: `<tee>: () => import("./<tee>.ts"),`
// where ./<tee>.ts exports `verifier: TeeVerifier` (./types.ts). Loaded lazily, so one broken
// verifier never stops the others.
import type { TeeVerifier } from "./types.ts";

type VerifierModule = { verifier: TeeVerifier };

export const verifierRegistry: Record<string, () => Promise<VerifierModule>> = {
  sample: () => import("./sample.ts"),
  sampledevice: () => import("./sampledevice.ts"),
  tdx: () => import("./tdx.ts"),
  snp: () => import("./snp.ts"),
  tpm: () => import("./tpm.ts"),
  "az-snp-vtpm": () => import("./az-snp-vtpm.ts"),
  "az-tdx-vtpm": () => import("./az-tdx-vtpm.ts"),
  azsnpvtpm: () => import("./az-snp-vtpm.ts").then((m) => ({ verifier: m.legacyVerifier })),
  aztdxvtpm: () => import("./az-tdx-vtpm.ts").then((m) => ({ verifier: m.legacyVerifier })),
};

export async function loadVerifier(tee: string): Promise<TeeVerifier | undefined> {
  const load = Object.hasOwn(verifierRegistry, tee) ? verifierRegistry[tee] : undefined;
  if (!load) return undefined;
  const { verifier } = await load();
  if (verifier.tee !== tee) throw new Error(`verifier registry: ./${tee}.ts declares tee "${verifier.tee}"`);
  return verifier;
}
