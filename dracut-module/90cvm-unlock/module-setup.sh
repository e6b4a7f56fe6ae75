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
#   cvm_unlock_open        agent: the agent opens the volumes itself (mode A; rd.luks=0 switches
#                          off the initrd's own LUKS handling)
#                          crypttab: systemd-cryptsetup opens the volumes of the image's crypttab,
#                          each reading its key from the cvm-unlock key socket (mode B, image
#                          mode only; docs/UNLOCK.md "Mode A or mode B")   [agent]
#   cvm_unlock_crypttab    crypttab: the crypttab installed as /etc/crypttab (dracut installs none
#                          itself unless hostonly)   [cvm_unlock_files_root + /etc/crypttab]
#   cvm_unlock_on_failure  poweroff | emergency: what a failed unlock does; emergency only for
#                          lab images (the console belongs to the host)  [poweroff]
#   cvm_unlock_root        mapper device written as root= into etc/cmdline.d, so the kernel
#                          cmdline can stay static; empty = leave root= to the cmdline or to
#                          gpt-auto            [/dev/mapper/root in mode A, empty in mode B]
#   cvm_unlock_timeout_s   TimeoutStartSec of the unlock unit (backstop; the agent has
#                          its own deadline_s)                        [360]
#   cvm_unlock_network     what brings the network up in the initrd: networkd (systemd-networkd),
#                          network-manager (NetworkManager through dracut's network module,
#                          rd.neednet=1), or auto: the handler dracut's network module itself
#                          would pick in this build root (NetworkManager's initrd generator if
#                          installed, else systemd-networkd)                    [auto]
#   cvm_unlock_verity      yes | no | auto: a dm-verity root whose hash the KBS releases
#                          (docs/VERITY.md): veritysetup + dm-verity in the image, and
#                          systemd-gpt-auto-generator / systemd-veritysetup-generator masked;
#                          auto = when the baked-in config has `verity` (generic images whose
#                          init-data may set verity.resource need yes)   [auto]

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

# ---- network (docs/PACKAGING.md "Network in the initramfs") ----

# The network handler the setting asks for, checked against the build root: "networkd" or
# "network-manager" on stdout, or a message on stderr and status 1.
cvm_unlock_network_handler() {
    local want=${cvm_unlock_network:-auto} nm=no networkd=no g
    for g in /usr/libexec/nm-initrd-generator /usr/lib/nm-initrd-generator \
        /usr/lib/NetworkManager/nm-initrd-generator; do
        [[ -x $dracutsysrootdir$g ]] && nm=yes
    done
    [[ -d $(dracut_module_path network-manager) ]] || nm=no
    [[ -x $dracutsysrootdir${systemdutildir:-/usr/lib/systemd}/systemd-networkd &&
        -d $(dracut_module_path systemd-networkd) ]] && networkd=yes
    case $want in
        auto)
            if [[ $nm == yes ]]; then echo network-manager; elif [[ $networkd == yes ]]; then echo networkd; else
                echo "cvm_unlock_network=auto: the build root has neither NetworkManager (nm-initrd-generator" \
                    "and dracut's network-manager module) nor systemd-networkd (and dracut's systemd-networkd module)" >&2
                return 1
            fi
            ;;
        network-manager)
            [[ $nm == yes ]] && echo network-manager && return 0
            echo "cvm_unlock_network=network-manager, but the build root lacks NetworkManager's nm-initrd-generator" \
                "or dracut's network-manager module (Debian: network-manager and dracut-network)" >&2
            return 1
            ;;
        networkd)
            [[ $networkd == yes ]] && echo networkd && return 0
            echo "cvm_unlock_network=networkd, but the build root lacks systemd-networkd or dracut's" \
                "systemd-networkd module (Debian: dracut-network)" >&2
            return 1
            ;;
        *)
            echo "cvm_unlock_network must be auto, networkd or network-manager, not '$want'" >&2
            return 1
            ;;
    esac
}

# called by dracut
depends() {
    # crypt: dm-crypt and the kernel crypto modules; the network handler: network-online.target
    # (network-manager first, so that dracut's network module, which picks an already included
    # handler, agrees); systemd-resolved (when the build root has it) resolves KBS host names,
    # otherwise cvm-unlock-resolv writes /etc/resolv.conf from what the handler learned.
    # A bad setting adds no handler here: install() stops the build with the reason.
    local resolved="" net=""
    [[ -x $dracutsysrootdir${systemdutildir:-/usr/lib/systemd}/systemd-resolved ]] && resolved=systemd-resolved
    case $(cvm_unlock_network_handler 2> /dev/null) in
        networkd) net=systemd-networkd ;;
        network-manager) net="network-manager network" ;;
    esac
    echo systemd $net $resolved dm crypt
    return 0
}

# called by dracut
installkernel() {
    # Always, even in hostonly mode: the build host is rarely the CVM. Missing names are
    # skipped (sev-guest needs 5.19, tdx-guest and tsm 6.7).
    hostonly='' instmods dm_crypt dm_verity configfs tsm sev-guest tdx-guest \
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
# checked against the files as installed in the initramfs. Prints the check's report (its
# "verity:" line says the config has a verity root).
cvm_unlock_check_config() {
    local bin=$1 conf=$2 out
    out=$("$bin" config --check --config "$conf" --files-root "$initdir" 2>&1) ||
        cvm_unlock_fatal "$bin config --check rejects $conf: $out"
    dinfo "cvm-unlock: $out"
    echo "$out"
}

# ---- dm-verity root (docs/VERITY.md) ----

# Whether to set the image up for a verity root: cvm_unlock_verity, or (auto) the config check's report.
cvm_unlock_wants_verity() {
    local report=$1
    case ${cvm_unlock_verity:-auto} in
        yes) return 0 ;;
        no) return 1 ;;
        auto) [[ $report == *$'\n'"verity: "* || $report == "verity: "* ]] ;;
        *) cvm_unlock_fatal "cvm_unlock_verity must be yes, no or auto, not '$cvm_unlock_verity'" ;;
    esac
}

# veritysetup for the agent, and no generator that could set up the root by itself: gpt-auto reads
# /proc/cmdline (not etc/cmdline.d) and would mount a root partition it finds by type without
# verity; veritysetup-generator would trust roothash= from the host-writable command line. The
# agent refuses to run when the gpt-auto mask is missing (it checks this very link).
cvm_unlock_install_verity() {
    inst_multiple veritysetup || cvm_unlock_fatal "veritysetup is missing (Debian: cryptsetup-bin)"
    mkdir -p "$initdir/etc/systemd/system-generators"
    local g
    for g in systemd-gpt-auto-generator systemd-veritysetup-generator; do
        ln -sfn /dev/null "$initdir/etc/systemd/system-generators/$g"
    done
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

# Install the generic configuration (checked by the agent: it must accept its own defaults).
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
}

# Load the firmware interfaces init-data comes through (init_data.sources smbios, fw_cfg) before
# the agent starts, in every mode: the agent reads init-data first thing, and its unit starts
# before udev's coldplug, which would otherwise be what loads qemu_fw_cfg (a module on Debian; so
# is dmi-sysfs on some kernels). The unit is ordered after systemd-modules-load.service.
cvm_unlock_install_firmware_modules() {
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

# ---- mode B: crypttab + key socket (docs/UNLOCK.md "Mode B") ----

# agent (mode A) or crypttab (mode B).
cvm_unlock_open_mode() {
    local open=${cvm_unlock_open:-agent}
    case $open in
        agent | crypttab) echo "$open" ;;
        *) cvm_unlock_fatal "cvm_unlock_open must be agent or crypttab, not '$open'" ;;
    esac
}

# The image's crypttab (checked with the config: every volume that uses the key socket must be one
# serve-keys accepts), the key socket and service, and the check after each systemd-cryptsetup@.
cvm_unlock_install_mode_b() {
    local bin=$1 conf=$2 out
    local crypttab=${cvm_unlock_crypttab:-${cvm_unlock_files_root:-}/etc/crypttab}
    [[ ${cvm_unlock_mode:-image} == image ]] ||
        cvm_unlock_fatal "cvm_unlock_open=crypttab needs cvm_unlock_mode=image (a generic initramfs has no per-VM crypttab)"
    [[ -f $crypttab ]] || cvm_unlock_fatal "cvm_unlock_open=crypttab: no crypttab at $crypttab (set cvm_unlock_crypttab)"
    inst_simple "$crypttab" /etc/crypttab || cvm_unlock_fatal "cannot install $crypttab"
    out=$("$bin" config --check --config "$conf" --files-root "$initdir" --crypttab "$initdir/etc/crypttab" 2>&1) ||
        cvm_unlock_fatal "$bin config --check rejects $conf with $crypttab: $out"
    dinfo "cvm-unlock: $out"
    inst_simple "$moddir/cvm-unlock-key.socket" "$systemdsystemunitdir/cvm-unlock-key.socket"
    cvm_unlock_fill_unit cvm-unlock-key.service.in cvm-unlock-key.service
    cvm_unlock_fill_unit cvm-unlock-verify-mapping@.service.in cvm-unlock-verify-mapping@.service
    inst_simple "$moddir/systemd-cryptsetup-cvm-unlock-key.conf" \
        "$systemdsystemunitdir/systemd-cryptsetup@.service.d/90-cvm-unlock-key.conf"
    $SYSTEMCTL -q --root "$initdir" enable cvm-unlock-key.socket cvm-unlock-key.service
}

# The fallback network configuration for the chosen handler: DHCPv4 on every wired NIC, which
# any configuration of the image owner (or ip= on the cmdline, for NetworkManager) overrides.
cvm_unlock_install_network() {
    local handler module=network-manager
    handler=$(cvm_unlock_network_handler 2>&1) || cvm_unlock_fatal "$handler"
    [[ $handler == networkd ]] && module=systemd-networkd
    dracut_module_included "$module" ||
        cvm_unlock_fatal "network handler $handler, but dracut's $module module is not in the image (omitted?)"
    if [[ $handler == networkd ]]; then
        inst_simple "$moddir/90-cvm-unlock-dhcp.network" "$systemdnetwork/90-cvm-unlock-dhcp.network"
        return
    fi
    local dest=/usr/lib/NetworkManager/system-connections/cvm-unlock-dhcp.nmconnection
    inst_simple "$moddir/cvm-unlock-dhcp.nmconnection" "$dest" || cvm_unlock_fatal "cannot install $dest"
    # NetworkManager ignores key files that others can read
    chmod 0600 "$initdir$dest"
}

# ---- units and cmdline ----

# A unit template with the failure policy and the timeout filled in.
cvm_unlock_fill_unit() {
    local src=$1 dest=$2 on_failure timeout=${cvm_unlock_timeout_s:-360}
    on_failure=$(cvm_unlock_failure_policy).target || exit 1
    [[ $timeout =~ ^[0-9]+$ ]] || cvm_unlock_fatal "cvm_unlock_timeout_s must be whole seconds, not '$timeout'"
    mkdir -p "$initdir$systemdsystemunitdir"
    sed -e "s|@ON_FAILURE@|$on_failure|" -e "s|@TIMEOUT@|$timeout|" "$moddir/$src" > "$initdir$systemdsystemunitdir/$dest"
    chmod 0644 "$initdir$systemdsystemunitdir/$dest"
}

# The units with the failure policy and timeout filled in.
cvm_unlock_install_units() {
    local u
    for u in cvm-unlock.service cvm-unlock-verify-root.service; do
        cvm_unlock_fill_unit "$u.in" "$u"
    done
}

# Static kernel command line fragment: mode A needs rd.luks=0 (nothing else may open or ask
# for the volume), the root is the device the agent opens, and a failure policy of poweroff
# also covers dracut's own emergency path (rd.shell=0: no shell; rd.emergency=poweroff).
# Mode B keeps the initrd's LUKS handling (systemd-cryptsetup opens the crypttab volumes) and has
# no default root (it is often an LV: the image build names it, or the cmdline does). dracut starts
# NetworkManager only with rd.neednet=1 (and a connection to bring up).
cvm_unlock_cmdline_conf() {
    local line="" root
    if [[ $(cvm_unlock_open_mode) == agent ]]; then
        line="rd.luks=0"
        root=${cvm_unlock_root-/dev/mapper/root}
    else
        root=${cvm_unlock_root:-}
    fi
    [[ $(cvm_unlock_network_handler 2> /dev/null) == network-manager ]] && line+="${line:+ }rd.neednet=1"
    [[ -n $root ]] && line+="${line:+ }root=$root"
    [[ $(cvm_unlock_failure_policy) == poweroff ]] && line+="${line:+ }rd.shell=0 rd.emergency=poweroff"
    mkdir -p "$initdir/etc/cmdline.d"
    echo "$line" > "$initdir/etc/cmdline.d/90cvm-unlock.conf"
}

# called by dracut
install() {
    local bin=${cvm_unlock_binary:-/usr/bin/cvm-unlock}
    local conf=${cvm_unlock_config:-$CVM_UNLOCK_CONF_DIR/config.json}

    cvm_unlock_failure_policy > /dev/null || exit 1
    cvm_unlock_open_mode > /dev/null || exit 1
    case ${cvm_unlock_mode:-image} in
        image) [[ -f $conf ]] || cvm_unlock_fatal "no agent configuration at $conf (or set cvm_unlock_mode=generic)" ;;
        generic) ;;
        *) cvm_unlock_fatal "cvm_unlock_mode must be image or generic, not '$cvm_unlock_mode'" ;;
    esac

    cvm_unlock_install_agent_unstripped "$bin"
    local report=""
    if [[ ${cvm_unlock_mode:-image} == generic ]]; then
        cvm_unlock_install_generic "$bin"
    else
        inst_simple "$conf" "$CVM_UNLOCK_CONF_DIR/config.json" || cvm_unlock_fatal "cannot install $conf"
        cvm_unlock_install_config_files "$bin" "$conf"
        # a config the agent rejects would only show up at boot (exit 3 = the failure policy);
        # mode B checks it together with the crypttab (cvm_unlock_install_mode_b)
        if [[ $(cvm_unlock_open_mode) == agent ]]; then
            report=$(cvm_unlock_check_config "$bin" "$conf") || exit 1
        fi
    fi
    if cvm_unlock_wants_verity "$report"; then cvm_unlock_install_verity; fi
    cvm_unlock_install_firmware_modules

    # systemd's crypt module installs systemd-cryptsetup, not the CLI the agent runs
    inst_multiple cryptsetup grep rm
    inst_script "$moddir/cvm-unlock-resolv.sh" /usr/lib/cvm-unlock/cvm-unlock-resolv
    [[ -e $initdir/etc/hosts ]] || printf '127.0.0.1 localhost\n::1 localhost\n' > "$initdir/etc/hosts"

    cvm_unlock_install_network
    inst_simple "$moddir/cvm-unlock-leave-initrd.service" "$systemdsystemunitdir/cvm-unlock-leave-initrd.service"
    inst_simple "$moddir/cvm-unlock-resolv.service" "$systemdsystemunitdir/cvm-unlock-resolv.service"
    cvm_unlock_install_units
    cvm_unlock_install_failure_unit
    if [[ $(cvm_unlock_open_mode) == crypttab ]]; then
        cvm_unlock_install_mode_b "$bin" "$conf"
    else
        inst_simple "$moddir/systemd-cryptsetup-after-cvm-unlock.conf" \
            "$systemdsystemunitdir/systemd-cryptsetup@.service.d/90-after-cvm-unlock.conf"
        inst_simple "$moddir/systemd-udev-trigger-cvm-unlock.conf" \
            "$systemdsystemunitdir/systemd-udev-trigger.service.d/90-cvm-unlock.conf"
        $SYSTEMCTL -q --root "$initdir" enable cvm-unlock.service
    fi
    cvm_unlock_cmdline_conf
    $SYSTEMCTL -q --root "$initdir" enable cvm-unlock-verify-root.service \
        cvm-unlock-leave-initrd.service cvm-unlock-failure.service cvm-unlock-resolv.service
}
