#!/bin/bash
# Resolver configuration for the initrd when systemd-resolved is not in it: write the DNS
# servers systemd-networkd learned (DHCP or .network) to /etc/resolv.conf, unless a usable
# one exists. Runs once the network is online (cvm-unlock-resolv.service); a KBS given by IP
# address does not need it.
set -u
if [[ -s /etc/resolv.conf ]] && grep -q '^nameserver' /etc/resolv.conf 2>/dev/null; then
    exit 0
fi
declare -A seen=()
servers=()
for f in /run/systemd/netif/links/* /run/systemd/netif/leases/*; do
    [[ -f $f ]] || continue
    while IFS='=' read -r k v; do
        [[ $k == DNS ]] || continue
        for s in $v; do
            # the state files list addresses, IPv6 possibly with %ifindex or #name suffixes
            s=${s%%#*}
            [[ $s =~ ^[0-9a-fA-F:.%]+$ && -z ${seen[$s]:-} ]] || continue
            seen[$s]=1
            servers+=("$s")
        done
    done < "$f"
done
if [[ ${#servers[@]} -eq 0 ]]; then
    echo "cvm-unlock-resolv: no DNS servers from systemd-networkd; KBS host names will not resolve"
    exit 0
fi
rm -f /etc/resolv.conf
{
    echo "# written by cvm-unlock-resolv from systemd-networkd state"
    for s in "${servers[@]:0:3}"; do echo "nameserver $s"; done
} > /etc/resolv.conf
echo "cvm-unlock-resolv: nameservers ${servers[*]:0:3}"
