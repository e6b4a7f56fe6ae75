// `bind --verity FILE`: store a verity resource (`cvm-unlock verity format` output) at the KBS with
// bind's admin credentials, CA pin and resource-policy options; no device is touched. The file is
// validated as the guest will validate it, so a resource the guest would refuse never reaches the KBS.
import { Deadline } from "../../platform/util/deadline.ts";
import type { ParsedArgs } from "../cli/args.ts";
import { readOptionFile } from "../cli/option-file.ts";
import type { CommandIO } from "../cli/command.ts";
import { MAX_VERITY_RESOURCE_BYTES, parseVerityResource } from "../verity/resource.ts";
import { planFromArgs, tokenFromArgs } from "./bind-plan.ts";
import { deliverToKbs } from "./kbs-side.ts";

const UPLOAD_DEADLINE_MS = 120_000;

export async function uploadVerityResource(args: ParsedArgs, io: CommandIO, file: string): Promise<number> {
  const value = new Uint8Array(readOptionFile(file, MAX_VERITY_RESOURCE_BYTES, "--verity"));
  const volumes = parseVerityResource(value);
  const { token, caPem } = tokenFromArgs(args);
  const plan = planFromArgs(args, `verity resource ${file}`, token, caPem, [], io.log);
  const deadline = new Deadline(UPLOAD_DEADLINE_MS);
  try {
    await deliverToKbs(plan, value, deadline, io);
  } finally {
    deadline.dispose();
  }
  for (const v of volumes)
    io.stdout.write(
      `verity ${v.name}: root hash ${v.roothash}${v.signature ? " (signed)" : ""} at ${token.resource}\n`,
    );
  return 0;
}
