#!/bin/bash
# Builds everything the VM boot tests need, cached and keyed by its inputs:
#   kernel (Debian's linux-image-amd64), a GPT disk whose x86-64 root partition is LUKS2 with a
#   busybox root whose init prints CVM-E2E markers, a swtpm state with an RSA AK persisted at
#   0x81010002 (what trustee's `tpm` attester uses), TLS material for the test KBS, and the
#   dracut initramfs images: "agent" (our module: cvm-unlock unlock), "generic" (our module without
#   per-VM data) and "floor" (no module of ours: the key is baked in and cryptsetup opens the root).
#
# Usage: test/e2e/setup.sh [step...]   steps: deps kernel tls tpm disk initrd uki sizes (default:
#        all but uki and sizes). Writes $CACHE/manifest.env for the tests. Idempotent; passes from nothing.
# Environment: CVM_E2E_CACHE (default /var/cache/cvm-unlock-e2e), CVM_E2E_BIN (default
#              dist/cvm-unlock), KVER (default: newest /boot/vmlinuz-*).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${CVM_E2E_CACHE:-/var/cache/cvm-unlock-e2e}
BIN=${CVM_E2E_BIN:-$REPO/dist/cvm-unlock}
MODULE_SRC=$REPO/dracut-module
ROOT_GUID=4f68bce3-e8cd-4db1-96e7-fbcaf984b709  # SD_GPT_ROOT_X86_64 (Discoverable Partitions)
LUKS_UUID=c5a1f00d-e2e0-4e2e-8e2e-00000000e2e0   # fixed: the baked config names it
KBS_GUEST_URL=https://10.0.2.2:47443             # host 127.0.0.1:47443 through QEMU user net
AK_HANDLE=0x81010002
PACKAGES=(qemu-system-x86 swtpm swtpm-tools tpm2-tools cryptsetup cryptsetup-bin
    linux-image-amd64 dracut dracut-core dracut-network busybox-static e2fsprogs gdisk
    zstd cpio kmod systemd openssl binutils ovmf systemd-boot-efi mtools dosfstools)

log() { echo "e2e-setup $(date +%T) $*" >&2; }
die() { echo "e2e-setup: ERROR: $*" >&2; exit 1; }
mkdir -p "$CACHE"
chmod 0700 "$CACHE"
# a helper process started by a step that failed half-way (set -e) must not outlive us
CLEANUP_PIDFILE=
cleanup() { [ -n "$CLEANUP_PIDFILE" ] && [ -s "$CLEANUP_PIDFILE" ] && kill "$(cat "$CLEANUP_PIDFILE")" 2>/dev/null; :; }
trap cleanup EXIT

# cached NAME INPUT...: true when $CACHE/NAME.stamp matches the hash of the inputs (files or
# strings); `stamp NAME INPUT...` records it after a successful build.
inputs_hash() {
    local i
    for i in "$@"; do
        if [ -f "$i" ]; then sha256sum < "$i"; elif [ -d "$i" ]; then
            (cd "$i" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
        else printf '%s\n' "$i"; fi
    done | sha256sum | cut -c1-32
}
cached() { [ -f "$CACHE/$1.stamp" ] && [ "$(cat "$CACHE/$1.stamp")" = "$(inputs_hash "${@:2}")" ]; }
stamp() { inputs_hash "${@:2}" > "$CACHE/$1.stamp"; }

# ------------------------------------------------------------------------------------ deps
step_deps() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && { log "packages present"; return; }
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # dracut replaces initramfs-tools; linux-image-amd64 provides the guest kernel + modules
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

kver() {
    if [ -n "${KVER:-}" ]; then echo "$KVER"; return; fi
    local k
    k=$(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -n1)
    [ -n "$k" ] && [ -d "/lib/modules/$k" ] || die "no kernel in /boot with modules (step deps installs linux-image-amd64)"
    echo "$k"
}

# ---------------------------------------------------------------------------------- kernel
step_kernel() {
    local k; k=$(kver)
    cp "/boot/vmlinuz-$k" "$CACHE/vmlinuz.tmp" && mv "$CACHE/vmlinuz.tmp" "$CACHE/vmlinuz"
    echo "$k" > "$CACHE/kver"
    log "kernel $k"
}

# -------------------------------------------------------------------------------------- tls
# Test CA + KBS server certificate valid for the guest's view of the host (10.0.2.2) and
# the host loopback. The CA is baked into the initramfs as the config's kbs.ca_file.
step_tls() {
    local d=$CACHE/tls
    cached tls "v1" && [ -s "$d/server.pem" ] && { log "tls cached"; return; }
    rm -rf "$d"; mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=cvm-unlock e2e test CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=cvm-unlock e2e KBS" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:10.0.2.2,IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > "$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 3650 -extfile "$d/ext.cnf" -out "$d/server.pem" 2>/dev/null
    rm -f "$d/server.csr" "$d/ext.cnf" "$d/ca.srl"
    stamp tls "v1"
    log "tls material in $d"
}

# ---------------------------------------------------------------------------------- swtpm
# A provisioned TPM: EK (swtpm_setup) + an RSA-2048 restricted signing AK (RSASSA-SHA256)
# under the owner hierarchy, persisted at $AK_HANDLE. Each boot gets a copy of this state.
step_tpm() {
    local d=$CACHE/swtpm-template
    cached tpm "v1" "$AK_HANDLE" && [ -s "$CACHE/ak.pem" ] && { log "swtpm state cached"; return; }
    rm -rf "$d" "$CACHE/ak.pem"; mkdir -p "$d"
    swtpm_setup --tpm2 --tpmstate "$d" --create-ek-cert --create-platform-cert --overwrite \
        > "$CACHE/swtpm_setup.log" 2>&1 || swtpm_setup --tpm2 --tpmstate "$d" --overwrite > "$CACHE/swtpm_setup.log" 2>&1
    local port pidf=$CACHE/swtpm-prov.pid
    port=$(free_port)
    swtpm socket --tpm2 --tpmstate dir="$d" --server type=tcp,port="$port",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear \
        --pid file="$pidf" --daemon
    CLEANUP_PIDFILE=$pidf
    local w; w=$(mktemp -d)
    export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
    (
        cd "$w"
        # no resource manager on this TCTI: flush transient objects after each tool
        tpm2_createprimary -Q -C o -g sha256 -G rsa2048 -c srk.ctx
        tpm2_flushcontext -t
        tpm2_create -Q -C srk.ctx -G rsa2048:rsassa-sha256:null -g sha256 \
            -a "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign" \
            -u ak.pub -r ak.priv
        tpm2_flushcontext -t
        tpm2_load -Q -C srk.ctx -u ak.pub -r ak.priv -c ak.ctx
        tpm2_flushcontext -t
        tpm2_evictcontrol -Q -C o -c ak.ctx "$AK_HANDLE" >/dev/null
        tpm2_flushcontext -t
        tpm2_readpublic -Q -c "$AK_HANDLE" -f pem -o "$CACHE/ak.pem"
        tpm2_shutdown -Q
    )
    unset TPM2TOOLS_TCTI
    rm -rf "$w"
    kill "$(cat "$pidf")" 2>/dev/null || :
    for _ in $(seq 50); do [ -e "/proc/$(cat "$pidf" 2>/dev/null)" ] || break; sleep 0.1; done
    rm -f "$pidf"; CLEANUP_PIDFILE=
    [ -s "$CACHE/ak.pem" ] || die "AK provisioning failed"
    stamp tpm "v1" "$AK_HANDLE"
    log "swtpm template with AK at $AK_HANDLE, public key $CACHE/ak.pem"
}

free_port() {
    python3 - <<'EOF' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
EOF
}

# ----------------------------------------------------------------------------------- disk
# Busybox root whose /sbin/init is the marker program, ext4 built without mounting, LUKS2
# encrypted offline in the image file (no device-mapper needed on the host), in a GPT disk
# whose partition type is x86-64 root (gpt-auto discoverable).
write_marker_init() {
    cat > "$1" <<'EOF'
#!/bin/sh
# /sbin/init of the encrypted test root: prove the switch, show PCR 15 and boot timings.
export PATH=/bin:/sbin
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/class ] || mount -t sysfs sysfs /sys
root=$(awk '$2=="/"{print $1" "$3}' /proc/mounts | tail -n1)
dm=""; for d in /sys/block/dm-*/dm/name; do [ -e "$d" ] && dm="$dm $(cat "$d")"; done
echo "CVM-E2E-MARKER: switch-root OK root=[$root] dm=[${dm# }] content=$(cat /etc/e2e-content) uptime=$(cut -d' ' -f1 /proc/uptime)"
pcr=/sys/class/tpm/tpm0/pcr-sha256/15
if [ -r "$pcr" ]; then echo "CVM-E2E-PCR15: $(cat "$pcr")"; else echo "CVM-E2E-PCR15: unavailable"; fi
echo "CVM-E2E-RUN: $(ls -A /run 2>/dev/null | tr '\n' ' ')"
# kernel + forwarded journal lines (systemd.journald.forward_to_kmsg=1) with timestamps
dmesg | grep -E 'Run /init as init process|Freeing initrd memory|cvm-unlock|Initrd Root Device|Switching root|systemd\[1\]: Finished|Reached target' \
    | sed 's/^/CVM-E2E-KMSG: /'
echo "CVM-E2E-DONE"
sync
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger
EOF
    chmod 0755 "$1"
}

step_disk() {
    local key=$CACHE/disk.key disk=$CACHE/disk.img
    local bb; bb=$(command -v busybox)
    local ver="v2 $LUKS_UUID $ROOT_GUID $(sha256sum < "$bb")"
    [ -s "$key" ] && cached disk "$ver" "$key" "$(declare -f step_disk write_marker_init)" && [ -s "$disk" ] && { log "disk cached"; return; }
    [ -s "$key" ] || { head -c 32 /dev/urandom > "$key.tmp" && chmod 0400 "$key.tmp" && mv "$key.tmp" "$key"; }
    local r=$CACHE/rootdir
    rm -rf "$r"; mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,run,tmp}
    cp "$bb" "$r/bin/busybox"
    local a
    for a in $("$r/bin/busybox" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
    write_marker_init "$r/sbin/init"
    echo "encrypted-root-ok" > "$r/etc/e2e-content"
    printf 'NAME="cvm-unlock e2e root"\nID=cvmunlocke2e\nVERSION_ID=1\n' > "$r/etc/os-release"
    : > "$r/etc/fstab"
    local p=$CACHE/rootpart.img
    rm -f "$p"; truncate -s 48M "$p"
    mke2fs -q -t ext4 -L e2eroot -d "$r" "$p" 32M
    cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 16M --uuid "$LUKS_UUID" \
        --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$key" --batch-mode "$p"
    rm -f "$disk.tmp"; truncate -s 50M "$disk.tmp"
    sgdisk -n 1:2048:+48M -t 1:$ROOT_GUID -c 1:root "$disk.tmp" >/dev/null
    dd if="$p" of="$disk.tmp" bs=1M seek=1 conv=notrunc status=none
    mv "$disk.tmp" "$disk"
    rm -rf "$p" "$r"
    stamp disk "$ver" "$key" "$(declare -f step_disk write_marker_init)"
    log "disk $disk (LUKS2 $LUKS_UUID)"
}

# --------------------------------------------------------------------------------- initrd
# A private dracut tree (symlinks to the system's, plus our module) so the test never installs
# into /usr/lib/dracut; builds pass their own --confdir, so the host's /etc/dracut.conf.d is ignored.
dracut_tree() {
    local t=$CACHE/dracut
    rm -rf "$t"
    cp -as /usr/lib/dracut "$t"
    rm -rf "$t/modules.d/90cvm-unlock" "$t/modules.d/95cvm-unlock-e2e-floor"
    cp -r "$MODULE_SRC/90cvm-unlock" "$t/modules.d/90cvm-unlock"
    cp -r "$HERE/dracut/95cvm-unlock-e2e-floor" "$t/modules.d/95cvm-unlock-e2e-floor"
    echo "$t"
}

write_guest_config() {
    cat > "$1" <<EOF
{
  "kbs": {
    "endpoints": ["$KBS_GUEST_URL"],
    "ca_file": "/etc/cvm-unlock/kbs-ca.pem",
    "request_timeout_s": 10
  },
  "resource": "default/key/root",
  "platform": { "tee": "tpm", "tpm": "/dev/tpmrm0", "tpm_ak_handle": "$AK_HANDLE" },
  "deadline_s": 240,
  "unlock": {
    "volumes": [ { "name": "root", "gpt_auto_root": true, "pins": { "uuid": "$LUKS_UUID" } } ],
    "device_timeout_s": 120,
    "measure": { "tpm": "required", "pcr": 15 }
  }
}
EOF
}

# build_initrd NAME MODULES EXTRA_CONF
build_initrd() {
    local name=$1 mods=$2 extra=$3 t0=$SECONDS tree k
    k=$(cat "$CACHE/kver")
    tree=$(dracut_tree)
    local conf=$CACHE/dracut-$name.conf.d
    rm -rf "$conf"; mkdir -p "$conf"
    # dracut's defaults otherwise (do_strip=yes: the module must survive the strip pass)
    printf 'compress="zstd"\n%s\n' "$extra" > "$conf/99-e2e.conf"
    rm -f "$CACHE/initrd-$name.img"
    # generic (not hostonly): like a distro's or kernel-uki-virt's static initramfs
    dracutbasedir=$tree dracut --quiet --force --conf /dev/null --confdir "$conf" \
        --no-hostonly --no-hostonly-cmdline --kver "$k" -m "$mods" "$CACHE/initrd-$name.img.tmp"
    mv "$CACHE/initrd-$name.img.tmp" "$CACHE/initrd-$name.img"
    log "initrd-$name: $(stat -c %s "$CACHE/initrd-$name.img") bytes in $((SECONDS - t0)) s"
    echo "$name $(stat -c %s "$CACHE/initrd-$name.img") $((SECONDS - t0))" >> "$CACHE/initrd-sizes.txt"
}

# systemd initrd without the bulk (plymouth, lvm, mdraid, ...); same set for every image
BASE_MODS="systemd-initrd systemd-udevd systemd-journald systemd-tmpfiles systemd-sysusers \
dracut-systemd kernel-modules base fs-lib rootfs-block udev-rules"

step_initrd() {
    [ -x "$BIN" ] || die "$BIN missing: run npm run build"
    [ -s "$CACHE/kver" ] || step_kernel
    install -m 0644 "$CACHE/tls/ca.pem" "$CACHE/kbs-ca.pem"
    write_guest_config "$CACHE/guest-config.json.new"
    mv "$CACHE/guest-config.json.new" "$CACHE/guest-config.json"
    # staged files, installed where the config (kbs.ca_file) says they are in the guest; the
    # failure policy is the module's default (poweroff), which test (b) checks
    local common="cvm_unlock_binary=\"$BIN\"
cvm_unlock_config=\"$CACHE/guest-config.json\"
cvm_unlock_ca_file=\"$CACHE/kbs-ca.pem\""
    local inputs=("$BIN" "$MODULE_SRC" "$HERE/dracut" "$CACHE/guest-config.json" "$CACHE/kbs-ca.pem" \
        "$(cat "$CACHE/kver")" "$(dpkg-query -W -f='${Version}' dracut-core)" \
        "$(declare -f step_initrd build_initrd dracut_tree write_guest_config)" "$BASE_MODS")
    if cached initrd-agent "${inputs[@]}" && [ -s "$CACHE/initrd-agent.img" ]; then
        log "initrd-agent cached"
    else
        build_initrd agent "$BASE_MODS cvm-unlock" "$common"
        stamp initrd-agent "${inputs[@]}"
    fi
    # the floor holds nothing of the agent's: its inputs leave the binary and our module out
    local floor=("$HERE/dracut" "$CACHE/disk.key" "$(cat "$CACHE/kver")" "$(dpkg-query -W -f='${Version}' dracut-core)" \
        "$(declare -f build_initrd dracut_tree)" "$BASE_MODS" "$LUKS_UUID")
    if cached initrd-floor "${floor[@]}" && [ -s "$CACHE/initrd-floor.img" ]; then
        log "initrd-floor cached"
    else
        # no cvm-unlock module in the floor: nothing of ours can slow the reference boot
        build_initrd floor "$BASE_MODS cvm-unlock-e2e-floor" "cvm_unlock_e2e_keyfile=\"$CACHE/disk.key\"
cvm_unlock_e2e_luks_uuid=\"$LUKS_UUID\""
        stamp initrd-floor "${floor[@]}"
    fi
    # generic: what a distribution ships (kernel-uki-virt): no config, no CA, no volume baked in;
    # everything per-VM arrives as init-data through SMBIOS type 11 (test "generic")
    local generic=("$BIN" "$MODULE_SRC" "$HERE/dracut" "$(cat "$CACHE/kver")" \
        "$(dpkg-query -W -f='${Version}' dracut-core)" "$(declare -f step_initrd build_initrd dracut_tree)" "$BASE_MODS")
    if cached initrd-generic "${generic[@]}" && [ -s "$CACHE/initrd-generic.img" ]; then
        log "initrd-generic cached"
    else
        build_initrd generic "$BASE_MODS cvm-unlock" "cvm_unlock_binary=\"$BIN\"
cvm_unlock_mode=\"generic\""
        stamp initrd-generic "${generic[@]}"
    fi
}

# ------------------------------------------------------------------------------ uki (opt-in)
# UEFI variant: OVMF -> UKI (systemd-stub sets LoaderDevicePartUUID) with a static cmdline that
# has no root=, an initramfs built with cvm_unlock_root="" so systemd-gpt-auto-generator finds
# the root by its GPT type and generates systemd-cryptsetup@root (which must wait for the agent),
# ESP + LUKS2 root on one GPT disk. Used by the CVM_E2E_UKI=1 test case.
UKI_CMDLINE="console=ttyS0 panic=-1 tsc=reliable loglevel=4 log_buf_len=4M printk.time=1 printk.devkmsg=on systemd.journald.forward_to_kmsg=1 systemd.journald.max_level_kmsg=info"
step_uki() {
    local stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
    [ -s "$stub" ] || die "$stub missing (package systemd-boot-efi)"
    [ -s "$CACHE/guest-config.json" ] || step_initrd
    local inputs=("$BIN" "$MODULE_SRC" "$CACHE/guest-config.json" "$CACHE/kbs-ca.pem" "$CACHE/disk.img" \
        "$(cat "$CACHE/kver")" "$UKI_CMDLINE" "$(declare -f step_uki build_initrd dracut_tree)" "$BASE_MODS")
    if cached uki "${inputs[@]}" && [ -s "$CACHE/disk-uki.img" ]; then log "uki cached"; return; fi
    build_initrd uki "$BASE_MODS cvm-unlock" "cvm_unlock_binary=\"$BIN\"
cvm_unlock_config=\"$CACHE/guest-config.json\"
cvm_unlock_ca_file=\"$CACHE/kbs-ca.pem\"
cvm_unlock_on_failure=\"poweroff\"
cvm_unlock_root=\"\""
    printf '%s' "$UKI_CMDLINE" > "$CACHE/uki-cmdline.txt"
    # systemd 252 has no ukify: sections placed above the stub's own
    objcopy --add-section .osrel=/etc/os-release --change-section-vma .osrel=0x20000 \
        --add-section .cmdline="$CACHE/uki-cmdline.txt" --change-section-vma .cmdline=0x30000 \
        --add-section .linux="$CACHE/vmlinuz" --change-section-vma .linux=0x2000000 \
        --add-section .initrd="$CACHE/initrd-uki.img" --change-section-vma .initrd=0x3000000 \
        "$stub" "$CACHE/uki.efi"
    local esp=$CACHE/esp.img disk=$CACHE/disk-uki.img
    rm -f "$esp"; truncate -s 160M "$esp"
    mkfs.vfat -F 32 -n ESP "$esp" >/dev/null
    mmd -i "$esp" ::/EFI ::/EFI/BOOT
    mcopy -i "$esp" "$CACHE/uki.efi" ::/EFI/BOOT/BOOTX64.EFI
    # p1 ESP at 1 MiB (160 MiB), p2 the same LUKS2 root partition as disk.img
    rm -f "$disk.tmp"; truncate -s 212M "$disk.tmp"
    sgdisk -n 1:2048:+160M -t 1:ef00 -c 1:esp -n 2:329728:+48M -t 2:$ROOT_GUID -c 2:root "$disk.tmp" >/dev/null
    dd if="$esp" of="$disk.tmp" bs=1M seek=1 conv=notrunc status=none
    dd if="$CACHE/disk.img" of="$disk.tmp" bs=1M skip=1 count=48 seek=161 conv=notrunc status=none
    mv "$disk.tmp" "$disk"
    rm -f "$esp" "$CACHE/uki.efi" "$CACHE/initrd-uki.img"
    stamp uki "${inputs[@]}"
    log "UEFI disk $disk (ESP with UKI + LUKS2 root)"
}

# initramfs size with and without the module (docs/PERFORMANCE.md "## Boot"); not cached.
# "without" uses the system's dracut tree (no module, no drop-in) with the same modules the
# cvm-unlock module depends on and the same compressor, so the difference is the module itself.
step_sizes() {
    [ -s "$CACHE/kver" ] || step_kernel
    local k t0 empty; k=$(cat "$CACHE/kver"); empty=$(mktemp -d)
    t0=$SECONDS
    dracut --quiet --force --conf /dev/null --confdir "$empty" --no-hostonly --no-hostonly-cmdline \
        --kver "$k" --zstd -m "$BASE_MODS systemd-networkd dm crypt" "$CACHE/initrd-size-without.img"
    rmdir "$empty"
    echo "size-without $(stat -c %s "$CACHE/initrd-size-without.img") $((SECONDS - t0))" >> "$CACHE/initrd-sizes.txt"
    build_initrd size-with "$BASE_MODS cvm-unlock" "cvm_unlock_binary=\"$BIN\"
cvm_unlock_config=\"$CACHE/guest-config.json\"
cvm_unlock_ca_file=\"$CACHE/kbs-ca.pem\""
    local f
    for f in size-without size-with; do
        echo "$f $(stat -c %s "$CACHE/initrd-$f.img") bytes, unpacked $(zstd -dc "$CACHE/initrd-$f.img" | wc -c)" | tee -a "$CACHE/initrd-sizes.txt" >&2
    done
    rm -f "$CACHE"/initrd-size-*.img
}

write_manifest() {
    cat > "$CACHE/manifest.env.tmp" <<EOF
CVM_E2E_CACHE=$CACHE
CVM_E2E_KERNEL=$CACHE/vmlinuz
CVM_E2E_KVER=$(cat "$CACHE/kver")
CVM_E2E_DISK=$CACHE/disk.img
CVM_E2E_DISK_KEY=$CACHE/disk.key
CVM_E2E_LUKS_UUID=$LUKS_UUID
CVM_E2E_INITRD_AGENT=$CACHE/initrd-agent.img
CVM_E2E_INITRD_FLOOR=$CACHE/initrd-floor.img
CVM_E2E_INITRD_GENERIC=$CACHE/initrd-generic.img
CVM_E2E_SWTPM_TEMPLATE=$CACHE/swtpm-template
CVM_E2E_AK_PEM=$CACHE/ak.pem
CVM_E2E_TLS_DIR=$CACHE/tls
CVM_E2E_KBS_PORT=${KBS_GUEST_URL##*:}
CVM_E2E_DISK_UKI=$CACHE/disk-uki.img
EOF
    mv "$CACHE/manifest.env.tmp" "$CACHE/manifest.env"
}

main() {
    [ $# -eq 0 ] && set -- deps kernel tls tpm disk initrd
    local s
    for s in "$@"; do "step_$s"; done
    write_manifest
    log "ready: $CACHE/manifest.env"
}
main "$@"
