#!/bin/bash
# Builds everything the VM boot tests need, cached and keyed by its inputs:
#   kernel (Debian's linux-image-amd64), a GPT disk whose x86-64 root partition is LUKS2 with a
#   busybox root whose init prints CVM-E2E markers, a swtpm state with an RSA AK persisted at
#   0x81010002 (what trustee's `tpm` attester uses), TLS material for the test KBS, the dracut
#   initramfs images: "agent" (our module: cvm-unlock unlock), "generic" (our module without per-VM
#   data) and "floor" (no module of ours: the key is baked in and cryptsetup opens the root), a
#   minimal Debian 12 tree ("debroot") for tests that need a real userspace or tools the build
#   host must not have, from it the LUKS2 Debian root of the SSH identity test ("sshroot"), and
#   the "nm" image built in that tree (NetworkManager brings the network up).
#
# Usage: test/e2e/setup.sh [step...]   steps: deps kernel tls tpm disk initrd debroot initrd_nm sshroot verity modeb
#        uki sizes (default: all but modeb, uki and sizes; test/e2e/mode-b.test.ts runs modeb). Writes
#        $CACHE/manifest.env for the tests. Idempotent; passes from nothing.
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
    zstd cpio kmod systemd openssl binutils ovmf systemd-boot-efi mtools dosfstools mmdebstrap)

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
# the serial console drains asynchronously (an emulated UART under TCG is slow): without a pause,
# poweroff cuts off the tail of the dump above
sleep 2
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger
EOF
    chmod 0755 "$1"
}

# make_marker_root DIR: the busybox test root (marker init, /etc/e2e-content) in DIR.
make_marker_root() {
    local r=$1 a
    rm -rf "$r"; mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,run,tmp}
    cp "$(command -v busybox)" "$r/bin/busybox"
    for a in $("$r/bin/busybox" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
    write_marker_init "$r/sbin/init"
    echo "encrypted-root-ok" > "$r/etc/e2e-content"
    printf 'NAME="cvm-unlock e2e root"\nID=cvmunlocke2e\nVERSION_ID=1\n' > "$r/etc/os-release"
    : > "$r/etc/fstab"
}

# luks_root_disk TREE LABEL MIB DISK: TREE as an ext4 file system (built without mounting), LUKS2
# encrypted offline with disk.key (no device-mapper needed on the host) in a MIB-MiB partition of
# type x86-64 root (gpt-auto discoverable) of the GPT disk image DISK.
luks_root_disk() {
    local tree=$1 label=$2 mib=$3 disk=$4 p=$CACHE/rootpart.img
    rm -f "$p"; truncate -s "${mib}M" "$p"
    mke2fs -q -t ext4 -L "$label" -d "$tree" "$p" "$((mib - 16))M"
    cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 16M --uuid "$LUKS_UUID" \
        --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$CACHE/disk.key" --batch-mode "$p"
    rm -f "$disk.tmp"; truncate -s "$((mib + 2))M" "$disk.tmp"
    sgdisk -n 1:2048:+"${mib}M" -t 1:$ROOT_GUID -c 1:root "$disk.tmp" >/dev/null
    dd if="$p" of="$disk.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
    mv "$disk.tmp" "$disk"
    rm -f "$p"
}

step_disk() {
    local key=$CACHE/disk.key disk=$CACHE/disk.img
    local bb; bb=$(command -v busybox)
    local ver="v2 $LUKS_UUID $ROOT_GUID $(sha256sum < "$bb")"
    [ -s "$key" ] && cached disk "$ver" "$key" "$(declare -f step_disk make_marker_root write_marker_init luks_root_disk)" && [ -s "$disk" ] && { log "disk cached"; return; }
    [ -s "$key" ] || { head -c 32 /dev/urandom > "$key.tmp" && chmod 0400 "$key.tmp" && mv "$key.tmp" "$key"; }
    local r=$CACHE/rootdir
    make_marker_root "$r"
    luks_root_disk "$r" e2eroot 48 "$disk"
    rm -rf "$r"
    stamp disk "$ver" "$key" "$(declare -f step_disk make_marker_root write_marker_init luks_root_disk)"
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

# -------------------------------------------------------------------------------- debroot
# A minimal Debian 12 tree, built once with mmdebstrap and cached. Two uses:
# - the root file system of VM tests that need a real systemd userspace (sshd, NetworkManager);
# - the build root for initramfs images that need tools which must never be installed on the
#   build or CI host: NetworkManager would take over the host's interfaces, and lvm2 would scan
#   and activate the host's disks. `build_initrd_in_debroot` runs dracut inside it.
# Its openssh-server package generated host keys at install time: tests use them as the
# "unattested keys an image ships with" that cvm-unlock must keep sshd from offering.
DEBROOT_SUITE=bookworm
DEBROOT_PACKAGES="systemd,systemd-sysv,udev,dbus,kmod,iproute2,procps,openssh-server,network-manager,\
dracut-core,dracut-network,cryptsetup-bin,lvm2,e2fsprogs,zstd,cpio"
step_debroot() {
    local d=$CACHE/debroot ver="v1 $DEBROOT_SUITE $DEBROOT_PACKAGES"
    cached debroot "$ver" && [ -x "$d/usr/bin/dracut" ] && { log "debroot cached"; return; }
    command -v mmdebstrap > /dev/null || die "mmdebstrap missing (step deps installs it)"
    rm -rf "$d" "$d.tmp"
    local t0=$SECONDS
    # --variant=apt: Essential + apt + the packages named, no Recommends
    mmdebstrap --quiet --variant=apt --mode=root --include="$DEBROOT_PACKAGES" \
        --customize-hook='echo cvm-e2e > "$1/etc/hostname"' \
        --customize-hook='rm -f "$1"/etc/machine-id; : > "$1"/etc/machine-id' \
        "$DEBROOT_SUITE" "$d.tmp" >&2
    mv "$d.tmp" "$d"
    stamp debroot "$ver"
    log "debroot $d ($(du -sh "$d" | cut -f1)) in $((SECONDS - t0)) s"
}

# in_debroot CMD...: run CMD chrooted in the Debian tree with /dev, /proc, /sys, a private /tmp
# and the host's kernel modules (read-only), in a private mount namespace: nothing stays mounted
# on the host afterwards, even when CMD fails.
in_debroot() {
    local d=$CACHE/debroot
    [ -x "$d/usr/bin/dracut" ] || step_debroot
    mkdir -p "$d/usr/lib/modules"
    unshare --mount --propagation private -- /bin/bash -euc '
        d=$1; shift
        mount --rbind /dev "$d/dev"
        mount -t proc proc "$d/proc"
        mount --rbind /sys "$d/sys"
        mount -t tmpfs tmpfs "$d/tmp"
        mount --bind /usr/lib/modules "$d/usr/lib/modules"
        mount -o remount,bind,ro "$d/usr/lib/modules"
        exec chroot "$d" "$@"' _ "$d" "$@"
}

# build_initrd_in_debroot NAME MODULES EXTRA_CONF [FILE...]: like build_initrd, but dracut and
# every tool it copies come from the Debian tree, not the build host. The FILEs (the agent,
# configs, keys) are staged under /build/files/<basename> in the tree: EXTRA_CONF names them
# there. Writes $CACHE/initrd-NAME.img.
build_initrd_in_debroot() {
    local name=$1 mods=$2 extra=$3 t0=$SECONDS k f
    shift 3
    k=$(cat "$CACHE/kver")
    local b=$CACHE/debroot/build
    rm -rf "$b"; mkdir -p "$b/files" "$b/conf.d"
    for f in "$@"; do cp -a "$f" "$b/files/"; done
    printf 'compress="zstd"\n%s\n' "$extra" > "$b/conf.d/99-e2e.conf"
    cp -r "$MODULE_SRC/90cvm-unlock" "$b/90cvm-unlock"
    # the same private dracut tree as dracut_tree, made inside the Debian tree
    in_debroot /bin/bash -euc '
        cp -as /usr/lib/dracut /build/dracut
        rm -rf /build/dracut/modules.d/90cvm-unlock
        mv /build/90cvm-unlock /build/dracut/modules.d/90cvm-unlock
        dracutbasedir=/build/dracut dracut --quiet --force --conf /dev/null --confdir /build/conf.d \
            --no-hostonly --no-hostonly-cmdline --kver "$1" -m "$2" /build/initrd.img' _ "$k" "$mods"
    mv "$b/initrd.img" "$CACHE/initrd-$name.img"
    rm -rf "$b"
    log "initrd-$name (in debroot): $(stat -c %s "$CACHE/initrd-$name.img") bytes in $((SECONDS - t0)) s"
}

# ------------------------------------------------------------------------------ initrd_nm
# "nm": the agent image, built in the Debian tree where NetworkManager is installed, so the
# module's cvm_unlock_network=auto picks NetworkManager (dracut's network + network-manager
# modules, rd.neednet=1) instead of systemd-networkd (test "NetworkManager").
step_initrd_nm() {
    [ -s "$CACHE/guest-config.json" ] || step_initrd
    local inputs=("$BIN" "$MODULE_SRC" "$CACHE/guest-config.json" "$CACHE/kbs-ca.pem" "$(cat "$CACHE/kver")" \
        "$(cat "$CACHE/debroot.stamp")" "$(declare -f step_initrd_nm build_initrd_in_debroot in_debroot)" "$BASE_MODS")
    if cached initrd-nm "${inputs[@]}" && [ -s "$CACHE/initrd-nm.img" ]; then log "initrd-nm cached"; return; fi
    build_initrd_in_debroot nm "$BASE_MODS cvm-unlock" 'cvm_unlock_binary="/build/files/cvm-unlock"
cvm_unlock_config="/build/files/guest-config.json"
cvm_unlock_ca_file="/build/files/kbs-ca.pem"' "$BIN" "$CACHE/guest-config.json" "$CACHE/kbs-ca.pem"
    stamp initrd-nm "${inputs[@]}"
}

# -------------------------------------------------------------------------------- sshroot
# The attested SSH identity test (test/e2e/ssh.test.ts): a copy of the Debian tree as the LUKS2
# root of disk-ssh.img (same LUKS UUID and key as disk.img, so one KBS resource opens either),
# with the SSH image kit installed (image/ssh/install-into-image: sshd drop-in, pre-start check,
# sshd-keygen@ and cloud-init drop-ins). The tree's own host keys, made when openssh-server was
# installed, are put back on purpose: the "unattested keys an image ships with", which sshd must
# not offer even when they are there. systemd-networkd does DHCP; NetworkManager (in the tree for
# other tests) is masked. initrd-ssh is initrd-agent with identity.ssh in its config.
SSH_KIT=$REPO/image/ssh
write_ssh_guest_config() {
    python3 - "$CACHE/guest-config.json" "$1" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["identity"] = {"ssh": {"resource": "default/ssh/host", "certificate_resource": "default/ssh/host-cert"}}
json.dump(c, open(sys.argv[2], "w"), indent=2)
EOF
}

step_sshroot() {
    [ -x "$CACHE/debroot/usr/bin/dracut" ] || step_debroot
    [ -s "$CACHE/guest-config.json" ] || step_initrd
    local disk=$CACHE/disk-ssh.img key=$CACHE/disk.key
    local inputs=("v1" "$LUKS_UUID" "$ROOT_GUID" "$key" "$CACHE/debroot.stamp" "$SSH_KIT" \
        "$(declare -f step_sshroot luks_root_disk)")
    if cached disk-ssh "${inputs[@]}" && [ -s "$disk" ]; then
        log "disk-ssh cached"
    else
        local t0=$SECONDS r=$CACHE/sshroot.tmp
        rm -rf "$r"; cp -a "$CACHE/debroot" "$r"; rm -rf "$r/build"
        "$SSH_KIT/install-into-image" "$r"
        cp -a "$CACHE/debroot"/etc/ssh/ssh_host_* "$r/etc/ssh/"
        rm -f "$r/etc/systemd/system/multi-user.target.wants/NetworkManager.service"
        ln -sf /dev/null "$r/etc/systemd/system/NetworkManager.service"
        ln -sf /dev/null "$r/etc/systemd/system/NetworkManager-wait-online.service"
        mkdir -p "$r/etc/systemd/network" "$r/etc/systemd/system/multi-user.target.wants" \
            "$r/etc/systemd/system/sockets.target.wants"
        printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' > "$r/etc/systemd/network/80-e2e-dhcp.network"
        ln -sf /lib/systemd/system/systemd-networkd.service \
            "$r/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
        ln -sf /lib/systemd/system/systemd-networkd.socket \
            "$r/etc/systemd/system/sockets.target.wants/systemd-networkd.socket"
        [ -L "$r/etc/systemd/system/multi-user.target.wants/ssh.service" ] \
            || die "openssh-server is not enabled in the Debian tree"
        printf '/dev/mapper/root / ext4 rw 0 0\n' > "$r/etc/fstab"
        luks_root_disk "$r" e2essh 784 "$disk"
        rm -rf "$r"
        stamp disk-ssh "${inputs[@]}"
        log "disk-ssh $disk (Debian root with the SSH image kit, LUKS2 $LUKS_UUID) in $((SECONDS - t0)) s"
    fi
    write_ssh_guest_config "$CACHE/guest-config-ssh.json.new"
    mv "$CACHE/guest-config-ssh.json.new" "$CACHE/guest-config-ssh.json"
    local initrd=("$BIN" "$MODULE_SRC" "$CACHE/guest-config-ssh.json" "$CACHE/kbs-ca.pem" "$(cat "$CACHE/kver")" \
        "$(dpkg-query -W -f='${Version}' dracut-core)" "$(declare -f step_sshroot build_initrd dracut_tree)" "$BASE_MODS")
    if cached initrd-ssh "${initrd[@]}" && [ -s "$CACHE/initrd-ssh.img" ]; then
        log "initrd-ssh cached"
    else
        build_initrd ssh "$BASE_MODS cvm-unlock" "cvm_unlock_binary=\"$BIN\"
cvm_unlock_config=\"$CACHE/guest-config-ssh.json\"
cvm_unlock_ca_file=\"$CACHE/kbs-ca.pem\""
        stamp initrd-ssh "${initrd[@]}"
    fi
}

# ---------------------------------------------------------------------------------- verity
# A dm-verity root whose root hash only the KBS holds (docs/VERITY.md), signed by a test signer
# whose certificate is baked into the initramfs, plus a LUKS2 /var unlocked in the same session.
# Two images (v1, v2: different content, so different root hashes) on GPT disks laid out per the
# Discoverable Partitions Specification: p1 x86-64 root (PARTUUID = first 128 bits of the root
# hash, label root-data), p2 x86-64 root-verity (PARTUUID = last 128 bits, label root-hash), p3
# LUKS2 /var (label var). The resources come from `cvm-unlock verity format --sign-key`.
ROOT_VERITY_GUID=2c7357ed-ebd2-46d9-aec1-23d437ec2bf5  # SD_GPT_ROOT_X86_64_VERITY
VAR_UUID=c5a1f00d-e2e0-4e2e-8e2e-00000000a0a0
write_verity_init() {
    cat > "$1" <<'EOF'
#!/bin/sh
# /sbin/init of the verity test root: mount the LUKS2 /var the agent opened, write to it, show that
# the root is read-only, then the common marker program.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
if mount -t ext4 /dev/mapper/var /var 2>/dev/null && echo ok > /var/written && sync; then
    echo "CVM-E2E-VAR: mounted content=$(cat /var/e2e-var) written=$(cat /var/written)"
else
    echo "CVM-E2E-VAR: not mounted"
fi
if touch /etc/written 2>/dev/null; then echo "CVM-E2E-ROOT-RO: no"; else echo "CVM-E2E-ROOT-RO: yes"; fi
exec /sbin/marker-init
EOF
    chmod 0755 "$1"
}

write_verity_config() {
    cat > "$1" <<EOF
{
  "kbs": {
    "endpoints": ["$KBS_GUEST_URL"],
    "ca_file": "/etc/cvm-unlock/kbs-ca.pem",
    "request_timeout_s": 10
  },
  "resource": "default/key/var",
  "platform": { "tee": "tpm", "tpm": "/dev/tpmrm0", "tpm_ak_handle": "$AK_HANDLE" },
  "deadline_s": 240,
  "verity": {
    "resource": "default/verity/root",
    "signer_cert": "/etc/cvm-unlock/verity-signer.pem",
    "device_timeout_s": 60
  },
  "unlock": {
    "volumes": [ { "name": "var", "partlabel": "var", "pins": { "uuid": "$VAR_UUID" } } ],
    "device_timeout_s": 60,
    "measure": { "tpm": "required", "pcr": 15 }
  }
}
EOF
}

# verity_image NAME CONTENT: $CACHE/verity/disk-NAME.img and its resource $CACHE/verity/NAME.json
verity_image() {
    local name=$1 content=$2 d=$CACHE/verity bb a
    bb=$(command -v busybox)
    local r=$d/rootdir data=$d/$name-data.img hash=$d/$name-hash.img disk=$d/disk-$name.img
    rm -rf "$r"; mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,run,tmp,var}
    cp "$bb" "$r/bin/busybox"
    for a in $("$r/bin/busybox" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
    write_marker_init "$r/sbin/marker-init"
    write_verity_init "$r/sbin/init"
    echo "$content" > "$r/etc/e2e-content"
    printf 'NAME="cvm-unlock e2e verity root"\nID=cvmunlocke2e\nVERSION_ID=%s\n' "$name" > "$r/etc/os-release"
    : > "$r/etc/fstab"
    rm -f "$data" "$hash"; truncate -s 16M "$data"
    mke2fs -q -t ext4 -b 4096 -L vroot -d "$r" "$data"
    "$BIN" verity format "$data" "$hash" --option panic-on-corruption \
        --sign-key "$d/signer.key" --sign-cert "$d/files/etc/cvm-unlock/verity-signer.pem" --out "$d/$name.json" >&2
    local h; h=$(sed -n 's/^ *"roothash": "\([0-9a-f]\{64\}\)",$/\1/p' "$d/$name.json")
    [ ${#h} -eq 64 ] || die "no root hash in $d/$name.json"
    local u1=${h:0:8}-${h:8:4}-${h:12:4}-${h:16:4}-${h:20:12} u2=${h:32:8}-${h:40:4}-${h:44:4}-${h:48:4}-${h:52:12}
    rm -f "$disk.tmp"; truncate -s 52M "$disk.tmp"
    sgdisk -n 1:2048:+16M -t 1:$ROOT_GUID -u 1:$u1 -c 1:root-data \
        -n 2:34816:+1M -t 2:$ROOT_VERITY_GUID -u 2:$u2 -c 2:root-hash \
        -n 3:36864:+32M -t 3:8300 -c 3:var "$disk.tmp" >/dev/null
    dd if="$data" of="$disk.tmp" bs=1M seek=1 conv=notrunc status=none
    dd if="$hash" of="$disk.tmp" bs=1M seek=17 conv=notrunc status=none
    dd if="$d/var.img" of="$disk.tmp" bs=1M seek=18 conv=notrunc status=none
    mv "$disk.tmp" "$disk"
    rm -rf "$r" "$data" "$hash"
    log "verity disk $disk (root hash $h)"
}

step_verity() {
    [ -x "$BIN" ] || die "$BIN missing: run npm run build"
    [ -s "$CACHE/kver" ] || step_kernel
    local d=$CACHE/verity bb; bb=$(command -v busybox)
    local ver=("v1" "$BIN" "$(sha256sum < "$bb")" "$VAR_UUID" "$(declare -f step_verity verity_image write_verity_init write_marker_init)")
    if cached verity-disks "${ver[@]}" && [ -s "$d/disk-v2.img" ] && [ -s "$d/var.key" ]; then
        log "verity disks cached"
    else
        rm -rf "$d"; mkdir -p "$d/files/etc/cvm-unlock"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj "/CN=cvm-unlock e2e verity signer" -keyout "$d/signer.key" \
            -out "$d/files/etc/cvm-unlock/verity-signer.pem" 2>/dev/null
        head -c 32 /dev/urandom > "$d/var.key"; chmod 0400 "$d/var.key"
        # LUKS2 /var: ext4 encrypted offline in the image file (no device-mapper on the host)
        local vr=$d/varroot; mkdir -p "$vr"; echo "luks-var-ok" > "$vr/e2e-var"
        truncate -s 32M "$d/var.img"
        mke2fs -q -t ext4 -L e2evar -d "$vr" "$d/var.img" 16M
        cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 16M --uuid "$VAR_UUID" \
            --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$d/var.key" --batch-mode "$d/var.img"
        rm -rf "$vr"
        verity_image v1 verity-root-v1
        verity_image v2 verity-root-v2
        rm -f "$d/var.img"
        stamp verity-disks "${ver[@]}"
    fi
    install -m 0644 "$CACHE/tls/ca.pem" "$CACHE/kbs-ca.pem"
    write_verity_config "$d/guest-config.json.new"
    mv "$d/guest-config.json.new" "$d/guest-config.json"
    local inputs=("$BIN" "$MODULE_SRC" "$d/guest-config.json" "$CACHE/kbs-ca.pem" "$d/files" \
        "$(cat "$CACHE/kver")" "$(dpkg-query -W -f='${Version}' dracut-core)" \
        "$(declare -f step_verity build_initrd dracut_tree write_verity_config)" "$BASE_MODS")
    if cached initrd-verity "${inputs[@]}" && [ -s "$CACHE/initrd-verity.img" ]; then
        log "initrd-verity cached"
    else
        # cvm_unlock_verity stays auto: the module must see the verity root in the config itself
        build_initrd verity "$BASE_MODS cvm-unlock" "cvm_unlock_binary=\"$BIN\"
cvm_unlock_config=\"$d/guest-config.json\"
cvm_unlock_ca_file=\"$CACHE/kbs-ca.pem\"
cvm_unlock_files_root=\"$d/files\""
        stamp initrd-verity "${inputs[@]}"
    fi
}

# --------------------------------------------------------------------------- mode B (opt-in step)
# Mode B (docs/UNLOCK.md "Mode B"): systemd-cryptsetup opens the volumes of the image's crypttab,
# reading each key from the cvm-unlock key socket. One disk, two LUKS2 partitions: "root" holds an
# LVM PV whose LV cvmvg/root is the marker root (LVM on LUKS, RHEL's layout), "var" an ext4 for
# /var. The build host has no device-mapper and must not get lvm2: the Debian tree's lvm2 makes PV
# and VG on a loop device, the LV goes into the VG metadata with vgcfgrestore (lvcreate wants the
# kernel's dm targets even with -an), the file system is written at the LV's first extent, and
# both partitions are encrypted offline like step_disk's. Step `modeb`, run by test/e2e/mode-b.test.ts.
MODEB_ROOT_UUID=c5a1f00d-e2e0-4e2e-8e2e-0000000000b1
MODEB_VAR_UUID=c5a1f00d-e2e0-4e2e-8e2e-0000000000b2
MODEB_LV_MIB=24

# The script modeb_lvm_pv runs in the Debian tree on /build-modeb/pv.img: PV, VG cvmvg, and the
# linear LV cvmvg/root (extents from 0, 4 MiB each) written into the VG metadata.
MODEB_LVM_SCRIPT='set -eu
export LVM_SUPPRESS_FD_WARNINGS=1
cfg="devices { obtain_device_list_from_udev=0 scan_lvs=0 } activation { udev_sync=0 udev_rules=0 }"
dev=$(losetup --find --show /build-modeb/pv.img)
trap "losetup -d $dev" EXIT
lvm pvcreate --config "$cfg" -y --dataalignment 1m "$dev" >/dev/null
lvm vgcreate --config "$cfg" -s 4m cvmvg "$dev" >/dev/null
lvm vgcfgbackup --config "$cfg" -f /build-modeb/vg.txt cvmvg >/dev/null
head -n -1 /build-modeb/vg.txt > /build-modeb/vg-lv.txt
printf "%s\n" "logical_volumes {" "root {" "id = \"cvmE2E-root-lv00-0000-0000-0000-000001\"" \
    "status = [\"READ\", \"WRITE\", \"VISIBLE\"]" "flags = []" "segment_count = 1" "segment1 {" \
    "start_extent = 0" "extent_count = $1" "type = \"striped\"" "stripe_count = 1" \
    "stripes = [\"pv0\", 0]" "}" "}" "}" "}" >> /build-modeb/vg-lv.txt
lvm vgcfgrestore --config "$cfg" -f /build-modeb/vg-lv.txt cvmvg 2>/dev/null
lvm lvs --config "$cfg" --noheadings -o lv_name cvmvg 2>/dev/null | grep -qw root
lvm pvs --config "$cfg" --noheadings --units b --nosuffix -o pe_start "$dev" 2>/dev/null | tr -d " " > /build-modeb/pe_start'

# modeb_lvm_pv PV_IMAGE FS_IMAGE: turn PV_IMAGE into an LVM PV whose LV cvmvg/root holds FS_IMAGE.
modeb_lvm_pv() {
    local pv=$1 fs=$2 b=$CACHE/debroot/build-modeb pe_start
    rm -rf "$b"; mkdir -p "$b"
    mv "$pv" "$b/pv.img"
    in_debroot /bin/bash -c "$MODEB_LVM_SCRIPT" _ $((MODEB_LV_MIB / 4))
    pe_start=$(cat "$b/pe_start")
    [[ $pe_start =~ ^[0-9]+$ ]] || die "no PV data offset from lvm ($pe_start)"
    dd if="$fs" of="$b/pv.img" bs=1M seek=$((pe_start / 1048576)) conv=notrunc status=none
    mv "$b/pv.img" "$pv"
    rm -rf "$b"
}

# modeb_encrypt IMAGE UUID KEY: LUKS2 in place, offline (the last 16 MiB make room for the header).
modeb_encrypt() {
    cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 16M --uuid "$2" \
        --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$3" --batch-mode "$1"
}

# write_modeb_config CONFIG CRYPTTAB: the image's agent configuration and crypttab.
write_modeb_config() {
    cat > "$1" <<EOF
{
  "kbs": { "endpoints": ["$KBS_GUEST_URL"], "ca_file": "/etc/cvm-unlock/kbs-ca.pem", "request_timeout_s": 10 },
  "platform": { "tee": "tpm", "tpm": "/dev/tpmrm0", "tpm_ak_handle": "$AK_HANDLE" },
  "deadline_s": 240,
  "unlock": {
    "volumes": [
      { "name": "root", "uuid": "$MODEB_ROOT_UUID", "resource": "default/key/modeb-root" },
      { "name": "var", "uuid": "$MODEB_VAR_UUID", "resource": "default/key/modeb-var" }
    ],
    "device_timeout_s": 120,
    "measure": { "tpm": "required", "pcr": 15 }
  }
}
EOF
    # discard and tries= as systemd documents them; x-initrd.attach keeps /var open across switch-root
    printf '%s\n' "root UUID=$MODEB_ROOT_UUID /run/cvm-unlock/key.sock luks,headless=true,discard,tries=1" \
        "var UUID=$MODEB_VAR_UUID /run/cvm-unlock/key.sock luks,headless=true,x-initrd.attach" > "$2"
}

# The marker root of mode B: its init first mounts /var (opened in the initrd) and shows its content.
write_modeb_init() {
    printf '%s\n' '#!/bin/sh' 'export PATH=/bin:/sbin' 'mount -t proc proc /proc; mount -t sysfs sysfs /sys' \
        'mkdir -p /var && mount -t ext4 -o ro /dev/mapper/var /var' \
        'echo "CVM-E2E-VAR: $(cat /var/e2e-var 2>&1)"' 'exec /sbin/marker-init' > "$1"
    chmod 0755 "$1"
}

step_modeb() {
    [ -s "$CACHE/kver" ] || step_kernel
    [ -s "$CACHE/kbs-ca.pem" ] || step_initrd
    local k
    for k in root var; do
        [ -s "$CACHE/modeb-$k.key" ] || { head -c 32 /dev/urandom > "$CACHE/modeb-$k.key.tmp" &&
            chmod 0400 "$CACHE/modeb-$k.key.tmp" && mv "$CACHE/modeb-$k.key.tmp" "$CACHE/modeb-$k.key"; }
    done
    local disk=$CACHE/disk-modeb.img fns
    fns=$(declare -f step_modeb modeb_lvm_pv modeb_encrypt write_modeb_init make_marker_root write_marker_init)
    local dver=("v1 $MODEB_ROOT_UUID $MODEB_VAR_UUID $MODEB_LV_MIB" "$MODEB_LVM_SCRIPT" "$CACHE/modeb-root.key" \
        "$CACHE/modeb-var.key" "$(sha256sum < "$(command -v busybox)")" "$fns" "$DEBROOT_PACKAGES")
    if cached disk-modeb "${dver[@]}" && [ -s "$disk" ]; then log "disk-modeb cached"; else
        local w=$CACHE/modeb-work
        rm -rf "$w"; mkdir -p "$w"
        make_marker_root "$w/root"
        mv "$w/root/sbin/init" "$w/root/sbin/marker-init"
        write_modeb_init "$w/root/sbin/init"
        mke2fs -q -t ext4 -L e2eroot -d "$w/root" "$w/fs.img" "${MODEB_LV_MIB}M"
        truncate -s 32M "$w/root.img"
        modeb_lvm_pv "$w/root.img" "$w/fs.img"
        truncate -s 48M "$w/root.img"
        modeb_encrypt "$w/root.img" "$MODEB_ROOT_UUID" "$CACHE/modeb-root.key"
        mkdir -p "$w/var"; echo "encrypted-var-ok" > "$w/var/e2e-var"
        truncate -s 32M "$w/var.img"
        mke2fs -q -t ext4 -L e2evar -d "$w/var" "$w/var.img" 16M
        modeb_encrypt "$w/var.img" "$MODEB_VAR_UUID" "$CACHE/modeb-var.key"
        rm -f "$disk.tmp"; truncate -s 84M "$disk.tmp"
        sgdisk -n 1:2048:+48M -t 1:8309 -c 1:cvmroot -n 2:0:+32M -t 2:8309 -c 2:cvmvar "$disk.tmp" >/dev/null
        dd if="$w/root.img" of="$disk.tmp" bs=1M seek=1 conv=notrunc status=none
        dd if="$w/var.img" of="$disk.tmp" bs=1M seek=49 conv=notrunc status=none
        mv "$disk.tmp" "$disk"
        rm -rf "$w"
        stamp disk-modeb "${dver[@]}"
        log "disk-modeb $disk (LVM on LUKS2 $MODEB_ROOT_UUID, /var LUKS2 $MODEB_VAR_UUID)"
    fi
    write_modeb_config "$CACHE/guest-config-modeb.json.new" "$CACHE/crypttab-modeb.new"
    mv "$CACHE/guest-config-modeb.json.new" "$CACHE/guest-config-modeb.json"
    mv "$CACHE/crypttab-modeb.new" "$CACHE/crypttab-modeb"
    local iver=("$BIN" "$MODULE_SRC" "$CACHE/guest-config-modeb.json" "$CACHE/crypttab-modeb" "$CACHE/kbs-ca.pem" \
        "$(cat "$CACHE/kver")" "$(declare -f step_modeb build_initrd_in_debroot in_debroot)" "$BASE_MODS" "$DEBROOT_PACKAGES")
    if cached initrd-modeb "${iver[@]}" && [ -s "$CACHE/initrd-modeb.img" ]; then log "initrd-modeb cached"; else
        build_initrd_in_debroot modeb "$BASE_MODS cvm-unlock lvm" "cvm_unlock_binary=\"/build/files/cvm-unlock\"
cvm_unlock_config=\"/build/files/guest-config-modeb.json\"
cvm_unlock_ca_file=\"/build/files/kbs-ca.pem\"
cvm_unlock_open=\"crypttab\"
cvm_unlock_crypttab=\"/build/files/crypttab-modeb\"
cvm_unlock_root=\"/dev/mapper/cvmvg-root\"" "$BIN" "$CACHE/guest-config-modeb.json" "$CACHE/crypttab-modeb" "$CACHE/kbs-ca.pem"
        stamp initrd-modeb "${iver[@]}"
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
CVM_E2E_INITRD_NM=$CACHE/initrd-nm.img
CVM_E2E_SWTPM_TEMPLATE=$CACHE/swtpm-template
CVM_E2E_AK_PEM=$CACHE/ak.pem
CVM_E2E_TLS_DIR=$CACHE/tls
CVM_E2E_KBS_PORT=${KBS_GUEST_URL##*:}
CVM_E2E_DISK_UKI=$CACHE/disk-uki.img
CVM_E2E_DEBROOT=$CACHE/debroot
CVM_E2E_DISK_SSH=$CACHE/disk-ssh.img
CVM_E2E_INITRD_SSH=$CACHE/initrd-ssh.img
CVM_E2E_VERITY_DIR=$CACHE/verity
CVM_E2E_INITRD_VERITY=$CACHE/initrd-verity.img
EOF
    mv "$CACHE/manifest.env.tmp" "$CACHE/manifest.env"
}

main() {
    [ $# -eq 0 ] && set -- deps kernel tls tpm disk initrd debroot initrd_nm sshroot verity
    local s
    for s in "$@"; do "step_$s"; done
    write_manifest
    log "ready: $CACHE/manifest.env"
}
main "$@"
