// The init-data channels, in the order docs/CONFIG.md lists them (a leaf module: the config schema
// imports it without pulling in the readers).
export const INIT_DATA_CHANNELS = ["smbios", "fw_cfg", "cmdline", "gcp", "azure", "aws"] as const;
export type InitDataChannel = (typeof INIT_DATA_CHANNELS)[number];
