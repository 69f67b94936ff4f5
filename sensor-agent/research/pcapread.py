"""Minimal pcap + radiotap + 802.11 probe-request reader for the estimator research.

Yields one dict per probe request: t (s), sa (6 bytes), rssi (dBm or None), seq, ies
(list of (id, bytes), extension elements as (255, ext_id, bytes) -> id 255 with data)."""
import struct

# radiotap fields: bit -> (align, size)
RT = {0: (8, 8), 1: (1, 1), 2: (1, 1), 3: (2, 4), 4: (2, 2), 5: (1, 1), 6: (1, 1),
      7: (2, 2), 8: (2, 2), 9: (2, 2), 10: (1, 1), 11: (1, 1), 12: (1, 1), 13: (1, 1),
      14: (2, 2), 15: (2, 2), 16: (1, 1), 17: (1, 1), 18: (4, 8), 19: (1, 3), 20: (4, 8),
      21: (2, 12), 22: (8, 12), 23: (2, 12)}


def radiotap(b):
    if len(b) < 8:
        return None
    hlen = struct.unpack_from('<H', b, 2)[0]
    words = []
    off = 4
    while True:
        w = struct.unpack_from('<I', b, off)[0]
        words.append(w)
        off += 4
        if not (w >> 31) & 1:
            break
    rssi = None
    flags = 0
    pos = off
    # only the first namespace's bits (radiotap), first word
    w = words[0]
    for bit in range(0, 29):
        if not (w >> bit) & 1:
            continue
        if bit not in RT:
            break
        al, sz = RT[bit]
        pos = (pos + al - 1) // al * al
        if bit == 1:
            flags = b[pos]
        if bit == 5:
            rssi = struct.unpack_from('<b', b, pos)[0]
            break
        pos += sz
    return hlen, rssi, flags


def read(path):
    data = open(path, 'rb').read()
    magic = struct.unpack_from('<I', data, 0)[0]
    assert magic in (0xa1b2c3d4, 0xa1b23c4d), hex(magic)
    nano = magic == 0xa1b23c4d
    off = 24
    while off + 16 <= len(data):
        s, us, incl, orig = struct.unpack_from('<IIII', data, off)
        pkt = data[off + 16: off + 16 + incl]
        off += 16 + incl
        t = s + us / (1e9 if nano else 1e6)
        rt = radiotap(pkt)
        if rt is None:
            continue
        hlen, rssi, flags = rt
        f = pkt[hlen:]
        if flags & 0x10:
            f = f[:-4]
        if len(f) < 24 or f[0] != 0x40:
            continue
        sa = f[10:16]
        seq = struct.unpack_from('<H', f, 22)[0] >> 4
        ies = []
        p = 24
        while p + 2 <= len(f):
            i, l = f[p], f[p + 1]
            if p + 2 + l > len(f):
                break
            ies.append((i, f[p + 2:p + 2 + l]))
            p += 2 + l
        yield dict(t=t, sa=sa, rssi=rssi, seq=seq, ies=ies)
