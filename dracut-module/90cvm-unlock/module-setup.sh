#!/bin/bash
# dracut module "cvm-unlock": attest the confidential VM to a trustee KBS from the initramfs,
# open the LUKS2 root with the released key (mode A) and measure the switch to the real root.
# See docs/PACKAGING.md.
#
# Settings (dracut.conf.d, sourced by dracut before this file; defaults in brackets):
#   cvm_unlock_binary      the agent                                  [/usr/bin/cvm-unlock]
#   cvm_unlock_mode        image: the image owner's configuration is baked in (below)
#                          generic: nothing per-VM at all (a distribution's UKI): the built-in
#                          defaults below, and the per-VM configuration comes as init-data from
#                          the VMM, bound into the evidence (docs/PACKAGING.md)   [image]
#   cvm_unlock_init_data_sources
#                          generic: init-data channels, in order   [smbios fw_cfg cmdline]
#   cvm_unlock_config      image: agent configuration, baked in as /etc/cvm-unlock/config.json
#                                                                     [/etc/cvm-unlock/config.json]
#   cvm_unlock_ca_file     where to read the CA bundle that the config's kbs.ca_file names, when
#                          it is staged elsewhere on the build host   [the kbs.ca_file path]
#   cvm_unlock_files_root  where the other files the config names (kbs.init_data_file,
#                          unlock.luks_token.allowed_ca_files) are staged: each is read from
#                          this directory + its path in the config   [/]
#   cvm_unlock_on_failure  poweroff | emergency: what a failed unlock does; emergency only for
#                          lab images (the console belongs to the host)  [poweroff]
#   cvm_unlock_root        mapper device written as root= into etc/cmdline.d, so the kernel
#                          cmdline can stay static; empty = leave root= to the cmdline or to
#                          gpt-auto                                   [/dev/mapper/root]
#   cvm_unlock_timeout_s   TimeoutStartSec of the unlock unit (backstop; the agent has
#                          its own deadline_s)                        [360]

CVM_UNLOCK_CONF_DIR=/etc/cvm-unlock

# dracut ignores what install() returns, so a misconfiguration has to stop dracut itself:
# an initramfs without a working agent would only fail at boot, as a VM that never comes up.
cvm_unlock_fatal() {
    dfatal "cvm-unlock: $*"
    exit 1
}

# called by dracut: only on request (`dracut --add cvm-unlock`, or add_dracutmodules+=" cvm-unlock "
# in the image build's own drop-in), never by default: a host that merely has the package
# installed builds its initramfs as before
check() {
    require_binaries "${cvm_unlock_binary:-/usr/bin/cvm-unlock}" cryptsetup || return 1
    return 255
}

# called by dracut
depends() {
    # crypt: dm-crypt and the kernel crypto modules; systemd-networkd: network-online.target;
    # systemd-resolved (when the build host has it) resolves KBS host names, otherwise
    # cvm-unlock-resolv writes /etc/resolv.conf from what networkd learned
    local resolved=""
    [[ -x ${systemdutildir:-/usr/lib/systemd}/systemd-resolved ]] && resolved=systemd-resolved
    echo systemd systemd-networkd $resolved dm crypt
    return 0
}

# called by dracut
installkernel() {
    # Always, even in hostonly mode: the build host is rarely the CVM. Missing names are
    # skipped (sev-guest needs 5.19, tdx-guest and tsm 6.7).
    hostonly='' instmods dm_crypt configfs tsm sev-guest tdx-guest \
        tpm_crb tpm_tis tpm_tis_core \
        virtio_pci virtio_blk virtio_scsi virtio_net virtio_rng dmi-sysfs qemu_fw_cfg \
        hv_vmbus hv_netvsc hv_storvsc nvme gve
}

# ---- failure path (docs/UNLOCK.md "Failure path", docs/PACKAGING.md "Failure policy") ----

# The failure policy: poweroff unless the image owner chose emergency (lab images only).
cvm_unlock_failure_policy() {
    local policy=${cvm_unlock_on_failure:-poweroff}
    case $policy in
        poweroff | emergency) echo "$policy" ;;
        *) cvm_unlock_fatal "cvm_unlock_on_failure must be poweroff or emergency, not '$policy'" ;;
    esac
}

# The backstop unit the failure targets pull in: failure marker + one console line.
cvm_unlock_install_failure_unit() {
    local policy
    policy=$(cvm_unlock_failure_policy) || exit 1
    mkdir -p "$initdir$systemdsystemunitdir"
    sed -e "s|@ACTION@|$policy|" "$moddir/cvm-unlock-failure.service.in" \
        > "$initdir$systemdsystemunitdir/cvm-unlock-failure.service"
    chmod 0644 "$initdir$systemdsystemunitdir/cvm-unlock-failure.service"
}

# ---- files the configuration names, and the build-time config check ----

# Install every file the agent config names (`cvm-unlock config --files`: kbs.ca_file,
# kbs.init_data_file, unlock.luks_token.allowed_ca_files) at the path the config gives; a
# missing one fails the build, which would otherwise only fail at boot.
cvm_unlock_install_config_files() {
    local bin=$1 conf=$2 list key dest src
    list=$("$bin" config --files --config "$conf" 2>&1) || cvm_unlock_fatal "$bin rejects $conf: $list"
    while IFS=$'\t' read -r key dest; do
        [[ -n $key ]] || continue
        if [[ $key == kbs.ca_file && -n ${cvm_unlock_ca_file:-} ]]; then
            src=$cvm_unlock_ca_file
        else
            src=${cvm_unlock_files_root:-}$dest
        fi
        [[ -f $src ]] || cvm_unlock_fatal "$src ($key in $conf) does not exist"
        inst_simple "$src" "$dest" || cvm_unlock_fatal "cannot install $src as $dest"
    done <<< "$list"
}

# What `unlock` will require of the config (volumes, resource, endpoints, tee, CA bundles),
# checked against the files as installed in the initramfs.
cvm_unlock_check_config() {
    local bin=$1 conf=$2 out
    out=$("$bin" config --check --config "$conf" --files-root "$initdir" 2>&1) ||
        cvm_unlock_fatal "$bin config --check rejects $conf: $out"
    dinfo "cvm-unlock: $out"
}

# ---- generic mode: no per-VM data in the initramfs ----

# The trusted configuration of a generic image: no KBS, CA or volume of anyone's, only where to
# find init-data, that it is required, and that it may configure the run; the root is found by
# its GPT type unless init-data names volumes. What init-data says is trustworthy only through
# the KBS policy's check of its digest (docs/SECURITY.md "init-data").
cvm_unlock_generic_config() {
    local sources="" s
    for s in ${cvm_unlock_init_data_sources:-smbios fw_cfg cmdline}; do
        [[ $s =~ ^[a-z_]+$ ]] || cvm_unlock_fatal "cvm_unlock_init_data_sources: '$s' is not a channel name"
        sources+="${sources:+, }\"$s\""
    done
    printf '{\n  "init_data": { "sources": [%s], "required": true, "configure": true },\n' "$sources"
    printf '  "unlock": { "volumes": [ { "name": "root", "gpt_auto_root": true } ] }\n}\n'
}

# Install the generic configuration (checked by the agent: it must accept its own defaults) and
# load the firmware interfaces init-data comes through (dmi-sysfs is a module on some kernels).
cvm_unlock_install_generic() {
    local bin=$1 conf out
    conf=$(mktemp) || cvm_unlock_fatal "mktemp failed"
    cvm_unlock_generic_config > "$conf"
    out=$("$bin" config --files --config "$conf" 2>&1 >/dev/null) || {
        rm -f "$conf"
        cvm_unlock_fatal "$bin rejects the generic configuration: $out"
    }
    inst_simple "$conf" "$CVM_UNLOCK_CONF_DIR/config.json" || cvm_unlock_fatal "cannot install the generic configuration"
    rm -f "$conf"
    mkdir -p "$initdir/etc/modules-load.d"
    printf 'dmi-sysfs\nqemu_fw_cfg\n' > "$initdir/etc/modules-load.d/90-cvm-unlock.conf"
}

# ---- the agent binary ----

# dracut's strip pass (do_strip=yes, its default) runs strip(1) over every executable regular file
# in the image, and strip removes the program embedded in a `bun build --compile` executable (the
# result runs as bare bun). The agent therefore goes in without execute bits, which that pass
# skips (`find -executable`), and cvm-unlock-exec.service sets them at boot before any unit runs
# it: the same image with do_strip yes or no, without changing the host's setting.
# Its libraries are resolved right away (DRACUT_RESOLVE_DEPS): dracut's deferred pass
# (DRACUT_RESOLVE_LAZY) only looks at executable files, and would miss libpthread and libdl.
cvm_unlock_install_agent_unstripped() {
    local bin=$1
    DRACUT_RESOLVE_DEPS=1 inst_binary "$bin" /usr/bin/cvm-unlock || cvm_unlock_fatal "cannot install $bin"
    chmod 0644 "$initdir/usr/bin/cvm-unlock"
    inst_multiple chmod
    inst_simple "$moddir/cvm-unlock-exec.service" "$systemdsystemunitdir/cvm-unlock-exec.service"
    $SYSTEMCTL -q --root "$initdir" enable cvm-unlock-exec.service
}

# ---- units and cmdline ----

# The units with the failure policy and timeout filled in.
cvm_unlock_install_units() {
    local on_failure
    on_failure=$(cvm_unlock_failure_policy).target || exit 1
    local timeout=${cvm_unlock_timeout_s:-360}
    [[ $timeout =~ ^[0-9]+$ ]] || cvm_unlock_fatal "cvm_unlock_timeout_s must be whole seconds, not '$timeout'"
    mkdir -p "$initdir$systemdsystemunitdir"
    local u
    for u in cvm-unlock.service cvm-unlock-verify-root.service; do
        sed -e "s|@ON_FAILURE@|$on_failure|" -e "s|@TIMEOUT@|$timeout|" \
            "$moddir/$u.in" > "$initdir$systemdsystemunitdir/$u"
        chmod 0644 "$initdir$systemdsystemunitdir/$u"
    done
}

# Static kernel command line fragment: mode A needs rd.luks=0 (nothing else may open or ask
# for the volume), the root is the device the agent opens, and a failure policy of poweroff
# also covers dracut's own emergency path (rd.shell=0: no shell; rd.emergency=poweroff).
cvm_unlock_cmdline_conf() {
    local line="rd.luks=0"
    local root=${cvm_unlock_root-/dev/mapper/root}
    [[ -n $root ]] && line+=" root=$root"
    [[ $(cvm_unlock_failure_policy) == poweroff ]] && line+=" rd.shell=0 rd.emergency=poweroff"
    mkdir -p "$initdir/etc/cmdline.d"
    echo "$line" > "$initdir/etc/cmdline.d/90cvm-unlock.conf"
}

# called by dracut
install() {
    local bin=${cvm_unlock_binary:-/usr/bin/cvm-unlock}
    local conf=${cvm_unlock_config:-$CVM_UNLOCK_CONF_DIR/config.json}

    cvm_unlock_failure_policy > /dev/null || exit 1
    case ${cvm_unlock_mode:-image} in
        image) [[ -f $conf ]] || cvm_unlock_fatal "no agent configuration at $conf (or set cvm_unlock_mode=generic)" ;;
        generic) ;;
        *) cvm_unlock_fatal "cvm_unlock_mode must be image or generic, not '$cvm_unlock_mode'" ;;
    esac

    cvm_unlock_install_agent_unstripped "$bin"
    if [[ ${cvm_unlock_mode:-image} == generic ]]; then
        cvm_unlock_install_generic "$bin"
    else
        inst_simple "$conf" "$CVM_UNLOCK_CONF_DIR/config.json" || cvm_unlock_fatal "cannot install $conf"
        cvm_unlock_install_config_files "$bin" "$conf"
        # a config the agent rejects would only show up at boot (exit 3 = the failure policy)
        cvm_unlock_check_config "$bin" "$conf"
    fi

    # systemd's crypt module installs systemd-cryptsetup, not the CLI the agent runs
    inst_multiple cryptsetup grep rm
    inst_script "$moddir/cvm-unlock-resolv.sh" /usr/lib/cvm-unlock/cvm-unlock-resolv
    [[ -e $initdir/etc/hosts ]] || printf '127.0.0.1 localhost\n::1 localhost\n' > "$initdir/etc/hosts"

    inst_simple "$moddir/90-cvm-unlock-dhcp.network" "$systemdnetwork/90-cvm-unlock-dhcp.network"
    inst_simple "$moddir/cvm-unlock-leave-initrd.service" "$systemdsystemunitdir/cvm-unlock-leave-initrd.service"
    inst_simple "$moddir/cvm-unlock-resolv.service" "$systemdsystemunitdir/cvm-unlock-resolv.service"
    cvm_unlock_install_units
    cvm_unlock_install_failure_unit
    inst_simple "$moddir/systemd-cryptsetup-after-cvm-unlock.conf" \
        "$systemdsystemunitdir/systemd-cryptsetup@.service.d/90-after-cvm-unlock.conf"
    cvm_unlock_cmdline_conf
    $SYSTEMCTL -q --root "$initdir" enable cvm-unlock.service cvm-unlock-verify-root.service \
        cvm-unlock-leave-initrd.service cvm-unlock-failure.service cvm-unlock-resolv.service
}
