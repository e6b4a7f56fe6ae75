// The artifacts test/e2e/setup.sh built (kernel, disk, initramfs images, swtpm state, TLS),
// read from $CVM_E2E_CACHE/manifest.env. Running setup.sh first keeps them fresh (it is cached).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export interface E2eManifest {
  cache: string;
  kernel: string;
  kver: string;
  disk: string;
  diskKeyFile: string;
  luksUuid: string;
  initrdAgent: string;
  initrdFloor: string;
  /** Built with cvm_unlock_mode=generic: nothing per-VM, init-data from the VMM. */
  initrdGeneric: string;
  /** The agent image built in the Debian tree, where the network handler is NetworkManager. */
  initrdNm: string;
  swtpmTemplate: string;
  akPem: string;
  tlsDir: string;
  kbsPort: number;
  /** UEFI disk (ESP with a UKI + the LUKS2 root), built by `setup.sh uki`. */
  diskUki: string;
  /** Minimal Debian 12 tree (`setup.sh debroot`): a real userspace, and the build root for
   * initramfs images whose tools must not be on the build host (NetworkManager, lvm2). */
  debroot: string;
  /** GPT disk whose LUKS2 root is the Debian tree with the SSH image kit (`setup.sh sshroot`). */
  diskSsh: string;
  /** initrd-agent with identity.ssh in its config. */
  initrdSsh: string;
  /** `setup.sh verity`: disk-v1.img, disk-v2.img, v1.json, v2.json (signed resources), var.key. */
  verityDir: string;
  /** Built with a `verity` config (KBS-released root hash, signer certificate, LUKS2 /var). */
  initrdVerity: string;
}

export const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
export const CACHE = process.env.CVM_E2E_CACHE ?? "/var/cache/cvm-unlock-e2e";

/** Run setup.sh (idempotent, cached) with its default steps or `steps`; throws with its output when it fails. */
export function runSetup(timeoutMs: number, steps: string[] = []): void {
  const r = spawnSync("bash", [path.join(REPO, "test/e2e/setup.sh"), ...steps], {
    env: { ...process.env, CVM_E2E_CACHE: CACHE },
    encoding: "utf8",
    timeout: timeoutMs,
    killSignal: "SIGKILL",
  });
  if (r.status !== 0)
    throw new Error(`test/e2e/setup.sh failed (status ${r.status}, signal ${r.signal}):\n${r.stderr.slice(-4000)}`);
}

export function readManifest(): E2eManifest {
  const file = path.join(CACHE, "manifest.env");
  const env = new Map<string, string>();
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) env.set(m[1]!, m[2]!);
  }
  const get = (k: string): string => {
    const v = env.get(k);
    if (v === undefined || v === "") throw new Error(`${file}: ${k} missing; rerun test/e2e/setup.sh`);
    return v;
  };
  return {
    cache: get("CVM_E2E_CACHE"),
    kernel: get("CVM_E2E_KERNEL"),
    kver: get("CVM_E2E_KVER"),
    disk: get("CVM_E2E_DISK"),
    diskKeyFile: get("CVM_E2E_DISK_KEY"),
    luksUuid: get("CVM_E2E_LUKS_UUID"),
    initrdAgent: get("CVM_E2E_INITRD_AGENT"),
    initrdFloor: get("CVM_E2E_INITRD_FLOOR"),
    initrdGeneric: get("CVM_E2E_INITRD_GENERIC"),
    initrdNm: get("CVM_E2E_INITRD_NM"),
    swtpmTemplate: get("CVM_E2E_SWTPM_TEMPLATE"),
    akPem: get("CVM_E2E_AK_PEM"),
    tlsDir: get("CVM_E2E_TLS_DIR"),
    kbsPort: Number(get("CVM_E2E_KBS_PORT")),
    diskUki: get("CVM_E2E_DISK_UKI"),
    debroot: get("CVM_E2E_DEBROOT"),
    diskSsh: get("CVM_E2E_DISK_SSH"),
    initrdSsh: get("CVM_E2E_INITRD_SSH"),
    verityDir: get("CVM_E2E_VERITY_DIR"),
    initrdVerity: get("CVM_E2E_INITRD_VERITY"),
  };
}
