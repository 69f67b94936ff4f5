#!/usr/bin/env python3
"""Writes sensor-agent/data/oui-ma-l.bin: every 24-bit OUI the IEEE Registration Authority
has assigned (MA-L, which holds the parents of the MA-M, MA-S and IAB blocks too), sorted,
3 bytes each, big-endian. The agent counts a Wi-Fi address whose locally-administered bit is
clear as a hardware address only when its first three bytes are in this list; random
addresses that leave the bit clear (some devices, anonymized captures) almost never are.

Input: the IEEE's public MA-L listing (oui.txt, https://standards-oui.ieee.org/oui/oui.txt;
also shipped unmodified in the netaddr Python package as netaddr/eui/oui.txt).
Only the assigned prefixes are kept, no names or addresses of organizations.

    python3 scripts/oui_prefixes.py oui.txt sensor-agent/data/oui-ma-l.bin
"""
import re
import sys


def main(src, dst):
    prefixes = set()
    with open(src, encoding='utf-8', errors='replace') as f:
        for line in f:
            m = re.match(r'^([0-9A-Fa-f]{6})\s+\(base 16\)', line)
            if m:
                prefixes.add(bytes.fromhex(m.group(1)))
    if len(prefixes) < 30000:
        sys.exit(f'{src}: only {len(prefixes)} prefixes; is it the MA-L listing?')
    with open(dst, 'wb') as out:
        out.write(b''.join(sorted(prefixes)))
    print(f'{dst}: {len(prefixes)} prefixes')


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
