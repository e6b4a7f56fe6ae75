#!/bin/bash
# Resolver configuration for the initrd when systemd-resolved is not in it. Runs once the network
# is online (cvm-unlock-resolv.service, next to the agent, which waits for its route itself); a KBS
# given by IP address does not need it. In order:
# - /etc/resolv.conf already names servers (NetworkManager writes it when it is not a symlink,
#   or the image ships one): keep it;
# - NetworkManager's own copy (/run/NetworkManager/resolv.conf, e.g. when /etc/resolv.conf is a
#   symlink elsewhere): its nameserver lines;
# - systemd-networkd's state files: the DNS servers it learned (DHCP or .network).
set -u
# the addresses on the nameserver lines of a resolv.conf-format file
nameservers() {
    local k v rest
    [[ -r $1 ]] || return 0
    while read -r k v rest; do [[ $k == nameserver ]] && echo "$v"; done < "$1"
}

existing=$(nameservers /etc/resolv.conf)
if [[ -n $existing ]]; then
    echo "cvm-unlock-resolv: /etc/resolv.conf names ${existing//$'\n'/ }"
    exit 0
fi
declare -A seen=()
servers=()
from=""
add() {
    [[ $1 =~ ^[0-9a-fA-F:.%]+$ && -z ${seen[$1]:-} ]] || return 0
    seen[$1]=1
    servers+=("$1")
}
for f in /run/NetworkManager/no-stub-resolv.conf /run/NetworkManager/resolv.conf; do
    for s in $(nameservers "$f"); do add "$s"; done
    [[ ${#servers[@]} -gt 0 ]] && from=NetworkManager && break
done
if [[ -z $from ]]; then
    for f in /run/systemd/netif/links/* /run/systemd/netif/leases/*; do
        [[ -f $f ]] || continue
        while IFS='=' read -r k v; do
            [[ $k == DNS ]] || continue
            # the state files list addresses, IPv6 possibly with %ifindex or #name suffixes
            for s in $v; do add "${s%%#*}"; done
        done < "$f"
    done
    from=systemd-networkd
fi
if [[ ${#servers[@]} -eq 0 ]]; then
    echo "cvm-unlock-resolv: no DNS servers from NetworkManager or systemd-networkd; KBS host names will not resolve"
    exit 0
fi
rm -f /etc/resolv.conf
{
    echo "# written by cvm-unlock-resolv from $from state"
    for s in "${servers[@]:0:3}"; do echo "nameserver $s"; done
} > /etc/resolv.conf
echo "cvm-unlock-resolv: nameservers ${servers[*]:0:3} (from $from)"
