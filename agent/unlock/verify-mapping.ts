// `cvm-unlock verify-mapping NAME` (mode B): run after systemd-cryptsetup@NAME opened a volume
// with a key from our socket. systemd-cryptsetup read the LUKS2 header from the device again, so
// a host could have swapped it after our checks (cipher_null, another offset, another device):
// the live dm-crypt table must equal the mapping recorded from the verified header
// (mapping-record.ts), otherwise the mapping (and anything LVM stacked on it) is taken down and
// the unit fails, which stops the boot.
import type { Deadline } from "../../platform/util/deadline.ts";
import { CvmError } from "../../platform/util/errors.ts";
import type { Config } from "../config/schema.ts";
import { readSocketVolumes } from "./crypttab.ts";
import { findCryptsetup } from "./cryptsetup.ts";
import { checkLiveMapping, refuseMapping } from "./live-mapping.ts";
import { mappingRecordPath, readMappingRecord } from "./mapping-record.ts";

export interface VerifyMappingRequest {
  name: string;
  crypttab: string;
  socket: string;
  config: Config;
  root: string;
  deadline: Deadline;
}

/** "checked" when the mapping matches; "not-ours" when crypttab does not give NAME our socket. */
export async function verifyMapping(r: VerifyMappingRequest): Promise<"checked" | "not-ours"> {
  if (!readSocketVolumes(r.crypttab, r.socket).some((v) => v.name === r.name)) return "not-ours";
  const check = {
    cryptsetup: findCryptsetup(r.config.unlock.cryptsetup),
    dmsetup: r.config.unlock.dmsetup,
    name: r.name,
    root: r.root,
    deadline: r.deadline,
  };
  let entry;
  try {
    entry = readMappingRecord(mappingRecordPath(r.config)).find((v) => v.name === r.name);
  } catch (e) {
    if (!(e instanceof CvmError)) throw e;
    return refuseMapping({ ...check, device: r.name }, e.message);
  }
  if (!entry)
    return refuseMapping(
      { ...check, device: r.name },
      `no verified header is recorded for ${r.name} (the key server did not check this volume)`,
    );
  await checkLiveMapping({
    ...check,
    device: entry.device,
    expected: entry.mapping,
    allowedOptions: entry.tableOptions,
  });
  return "checked";
}
