// Finding the init-data of this boot, once per run: the same bytes are bound, sent and used as a
// configuration layer (never re-read, so the host cannot swap them in between).
import { Deadline } from "../../platform/util/deadline.ts";
import { CvmError } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";
import type { Config } from "../config/schema.ts";
import { describeInitData, type InitDataDocument } from "./document.ts";
import { findInitData } from "./sources.ts";

export async function resolveInitData(base: Config, root: string, log: Logger): Promise<InitDataDocument | undefined> {
  const channels = base.init_data.sources;
  if (channels.length === 0 && base.kbs.init_data_file === undefined) {
    if (base.init_data.required)
      throw new CvmError("config", "init_data.required is set, but no init-data source is enabled (init_data.sources)");
    return undefined;
  }
  const deadline = new Deadline(base.deadline_s * 1000);
  try {
    const doc = await findInitData(
      { channels, file: base.kbs.init_data_file },
      { root, metadataUrl: base.init_data.metadata_url, deadline, log },
    );
    if (doc) log.notice(`init-data from ${doc.origin}: ${describeInitData(doc)} (${doc.body.length} bytes)`);
    else if (base.init_data.required)
      throw new CvmError(
        "config",
        `no init-data found (looked in: ${channels.join(", ")}), and this image requires it`,
        {
          hint: "pass init-data to the VM, e.g. QEMU -smbios type=11,value=io.cvm-unlock.init-data:<base64url> (docs/PACKAGING.md)",
        },
      );
    else log.info(`no init-data (looked in: ${channels.join(", ") || "nothing"})`);
    return doc;
  } finally {
    deadline.dispose();
  }
}
