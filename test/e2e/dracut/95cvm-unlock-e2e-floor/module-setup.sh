#!/bin/bash
# TEST ONLY: the "floor" image for boot-time measurements: the disk key is baked in and a plain
# unit opens the root as soon as the disk appears. No cvm-unlock module (nothing of ours, no
# network), so nothing the product adds can slow the floor. The difference between the two boots
# is what attestation costs. Never ship this.
#   cvm_unlock_e2e_keyfile    key file to bake in
#   cvm_unlock_e2e_luks_uuid  LUKS UUID of the root volume

check() { return 255; }
depends() { echo systemd dm crypt; return 0; }

install() {
    [[ -f ${cvm_unlock_e2e_keyfile:-} && -n ${cvm_unlock_e2e_luks_uuid:-} ]] || {
        derror "cvm-unlock-e2e-floor: set cvm_unlock_e2e_keyfile and cvm_unlock_e2e_luks_uuid"; return 1; }
    inst_multiple cryptsetup
    inst_simple "$cvm_unlock_e2e_keyfile" /etc/cvm-unlock-e2e-floor/disk.key
    chmod 0400 "$initdir/etc/cvm-unlock-e2e-floor/disk.key"
    local esc=${cvm_unlock_e2e_luks_uuid//-/\\\\x2d}   # "-" escaped for systemd unit names (and once more for sed)
    sed -e "s|@LUKS_UUID_ESC@|$esc|g" -e "s|@LUKS_UUID@|$cvm_unlock_e2e_luks_uuid|g" "$moddir/cvm-unlock-e2e-floor.service.in" \
        > "$initdir$systemdsystemunitdir/cvm-unlock-e2e-floor.service"
    # what the product module's cmdline.d says too: nothing else opens the volume, root is the mapping
    mkdir -p "$initdir/etc/cmdline.d"
    echo "rd.luks=0 root=/dev/mapper/root" > "$initdir/etc/cmdline.d/95cvm-unlock-e2e-floor.conf"
    $SYSTEMCTL -q --root "$initdir" enable cvm-unlock-e2e-floor.service
}
