// The `identity` section: secrets that make the booted VM recognisable as the attested one
// (docs/SSH-IDENTITY.md). Fetched in the same attested session as the first volume's key.
import { RESOURCE_PATH } from "./patterns.ts";
import { field, obj, optional, required, str } from "./validate.ts";

export const SSH_IDENTITY_POLICIES = ["required", "optional"] as const;

export const sshIdentitySchema = obj({
  /** KBS resource holding the OpenSSH ed25519 host private key (unencrypted openssh-key-v1 PEM). */
  resource: required(str({ pattern: RESOURCE_PATH, what: "resource path REPO/TYPE/TAG" })),
  /** KBS resource holding the host certificate for that key (ssh-keygen -s ... -h), if any. */
  certificate_resource: optional(str({ pattern: RESOURCE_PATH, what: "resource path REPO/TYPE/TAG" })),
  /** "required": no identity fails the boot closed; "optional": boot, sshd gets no host key from us. */
  policy: field(str({ oneOf: SSH_IDENTITY_POLICIES }), "required"),
});

export const identitySchema = obj({
  ssh: optional(sshIdentitySchema),
});
