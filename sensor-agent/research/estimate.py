"""Research: physical Wi-Fi devices per window from probe requests (issue 15).

Run: python3 estimate.py  (reads ../tests/data/captures and /work/shared/captures/brno-lab CSVs)
"""
import csv, os, sys, math, statistics, itertools, collections
import pcapread

CAP = os.path.join(os.path.dirname(__file__), '..', 'tests', 'data', 'captures')
CSV = os.environ.get('BRNO_CSV', '/work/shared/captures/brno-lab')
LAB = ['sc6-61_2022-10-19', 'sc6-61_2022-11-16', 'sc6-61_2023-02-23']
PHONES = ['OppoFindX3Neo-A', 'iPhone11-B', 'iPhone11-F', 'iPhone11-M', 'iPhone12-M',
          'iPhone12Pro-C', 'iPhone7-F', 'iPhoneXR-A']
BACKGROUND = (bytes.fromhex('dcfb48'), bytes.fromhex('40ec99'))
WIN = 900


def load_lab(day):
    frames = list(pcapread.read(f'{CAP}/brno-lab/{day}_anonymized.pcap'))
    rows = list(csv.DictReader(open(f'{CSV}/{day}_ver-99.csv'), delimiter=';'))
    assert len(rows) == len(frames), (len(rows), len(frames))
    for f, r in zip(frames, rows):
        f['occ'] = float(r['occupancy'])
    # the window's head count: mean of the hand count over all its frames (PCs included)
    occ = collections.defaultdict(list)
    for f in frames:
        occ[int(f['t'] // WIN) * WIN].append(f['occ'])
    keep = [f for f in frames if not f['sa'].startswith(BACKGROUND)]
    for f in keep:
        f['wocc'] = statistics.mean(occ[int(f['t'] // WIN) * WIN])
    return keep


def occupancy_table(path):
    """Writes the per-window head counts the Rust test reads (derived from the MIT CSVs)."""
    with open(path, 'w') as out:
        out.write('# brno-lab head counts per 15-minute UTC window: mean of the CSV `occupancy`\n')
        out.write('# over the window\'s probe requests (sensor-agent/research/estimate.py occupancy)\n')
        out.write('day,window_start_unix,people\n')
        for day in LAB:
            seen = {}
            for f in load_lab(day):
                seen[int(f['t'] // WIN) * WIN] = f['wocc']
            for start, people in sorted(seen.items()):
                out.write(f'{day},{start},{people:.2f}\n')


def load_phone(name):
    return list(pcapread.read(f'{CAP}/probing-patterns/{name}_anonymized.pcap'))


# --- fingerprint -------------------------------------------------------------
FP_IDS = {1, 50, 45, 191}     # rates, extended rates, HT caps, VHT caps
FP_EXT = {35}                 # HE capabilities (element 255, extension id 35)


def fingerprint(ies, opts):
    parts = []
    for i, d in ies:
        if i in FP_IDS or (opts.get('extcap') and i == 127):
            v = d
            if opts.get('mask_basic') and i in (1, 50):
                v = bytes(x & 0x7f for x in d)
            parts.append((i, v))
        elif i == 255 and d[:1] and d[0] in FP_EXT:
            parts.append((i, d))
    if opts.get('order'):
        # ID order of every element except SSID payloads & vendor payloads (IDs only)
        parts.append(('order', tuple(i if i != 255 else (255, d[:1]) for i, d in ies)))
    else:
        parts.sort(key=lambda p: str(p[0]))
    return tuple(parts)


def is_random(sa, opts):
    if opts.get('all_grouped'):
        return True
    # locally administered, or group bit (a group address never transmits)
    return bool(sa[0] & 0x02) or (opts.get('group_is_random', True) and bool(sa[0] & 0x01))


def estimate(frames, opts):
    """Physical Wi-Fi devices among `frames` (one window)."""
    gate = opts.get('gate')
    if gate is not None:
        frames = [f for f in frames if f['rssi'] is None or f['rssi'] >= gate]
    glob = set()
    groups = collections.defaultdict(lambda: collections.defaultdict(list))
    for f in frames:
        if is_random(f['sa'], opts):
            groups[fingerprint(f['ies'], opts)][f['sa']].append(f)
        else:
            glob.add(f['sa'])
    n = len(glob)
    for fp, addrs in groups.items():
        nframes = sum(len(v) for v in addrs.values())
        if nframes < opts.get('min_frames', 2):
            continue
        n += concurrency(addrs, opts)
    return n


def concurrency(addrs, opts):
    """Largest number of the group's addresses active at one moment."""
    linger = opts.get('linger', 0.0)
    ev = []
    for a, fs in addrs.items():
        ts = [f['t'] for f in fs]
        ev.append((min(ts), 1))
        ev.append((max(ts) + linger, -1))
    ev.sort(key=lambda e: (e[0], -e[1]))  # a start at the same moment as an end overlaps
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    if opts.get('chain'):
        best = chains(addrs, opts)
    return best


def chains(addrs, opts):
    """Greedy minimum chain cover: an address can follow another one of the group if it
    starts after the other's end (one device rotating): the minimum number of devices
    needed = max concurrency (interval graph). With a max gap, chains break after a
    silence longer than `gap` seconds (a device that left and another that came)."""
    gap = opts.get('gap')
    iv = sorted((min(f['t'] for f in fs), max(f['t'] for f in fs)) for fs in addrs.values())
    ends = []  # end times of open chains
    for s, e in iv:
        # reuse a chain that ended before s (and within gap)
        cand = [k for k, t in enumerate(ends) if t <= s and (gap is None or s - t <= gap)]
        if cand:
            k = max(cand, key=lambda k: ends[k])
            ends[k] = e
        else:
            ends.append(e)
    return len(ends)


def windows(frames, win=WIN):
    out = collections.defaultdict(list)
    for f in frames:
        out[int(f['t'] // win) * win].append(f)
    return dict(sorted(out.items()))


def learned_gate(frames, q):
    rs = sorted(f['rssi'] for f in frames if f['rssi'] is not None)
    if not rs:
        return None
    return rs[int(q * (len(rs) - 1))]


def evaluate(opts, verbose=False):
    res = {}
    per = []
    empty = []
    fitdata = []
    for day in LAB:
        frames = load_lab(day) if day not in CACHE else CACHE[day]
        CACHE[day] = frames
        o = dict(opts)
        if opts.get('gate_q') is not None:
            o['gate'] = learned_gate(frames, opts['gate_q'])
        for start, fs in windows(frames).items():
            occ = fs[0]['wocc']
            est = estimate(fs, o)
            naive = len({f['sa'] for f in fs})
            if occ >= 5:
                per.append((day, start, occ, est, est / occ, naive / occ))
                fitdata.append((day, occ, est))
            elif occ == 0:
                empty.append((day, start, est))
    ratios = [p[4] for p in per]
    res['occupied'] = len(per)
    res['in_0.6_1.6'] = sum(0.6 <= r <= 1.6 for r in ratios) / len(per)
    res['ratio_median'] = statistics.median(ratios)
    res['naive_ratio_median'] = statistics.median(p[5] for p in per)
    res['empty_max'] = max(e[2] for e in empty) if empty else None
    res['empty_windows'] = len(empty)
    # phones
    ph = {}
    for name in PHONES:
        fs = CACHE.get(name) or load_phone(name)
        CACHE[name] = fs
        ph[name] = max(estimate(w, opts) for w in windows(fs).values())
    res['phone_max'] = max(ph.values())
    m2, m3 = [], []
    for k, store in ((2, m2), (3, m3)):
        for combo in itertools.combinations(PHONES, k):
            merged = merge([CACHE[n] for n in combo])
            store.append(max(estimate(w, opts) for w in windows(merged).values()))
    res['merged2_range'] = (min(m2), max(m2))
    res['merged2_ok'] = sum(2 <= x <= 4 for x in m2) / len(m2)
    res['merged3_range'] = (min(m3), max(m3))
    res['merged3_ok'] = sum(3 <= x <= 5 for x in m3) / len(m3)
    # fit on two days, judge third (line through origin: people = a * devices)
    days = sorted({d for d, _, _ in fitdata})
    cv = []
    for held in days:
        tr = [(o_, e) for d, o_, e in fitdata if d != held]
        a = sum(o_ * e for o_, e in tr) / max(1e-9, sum(e * e for o_, e in tr))
        te = [(o_, e) for d, o_, e in fitdata if d == held]
        cv += [abs(a * e - o_) <= 0.3 * o_ for o_, e in te]
    res['fit2_judge1_within30'] = sum(cv) / len(cv) if cv else None
    if verbose:
        for p in per:
            print('  %s %s occ %.1f est %d ratio %.2f naive %.1f' % p[:2] + ('',) * 0 if False else
                  '  %s %d occ %5.1f est %3d ratio %.2f naive/person %.1f' % p)
        for e in empty:
            print('  empty %s %d est %d' % e)
        print('  phones', ph)
        print('  merged2', sorted(collections.Counter(m2).items()), 'merged3', sorted(collections.Counter(m3).items()))
    return res


def merge(lists):
    """Merge one-phone captures as if recorded together: shift each to start at 0."""
    out = []
    for fs in lists:
        t0 = fs[0]['t']
        out += [dict(f, t=f['t'] - t0) for f in fs]
    return sorted(out, key=lambda f: f['t'])


CACHE = {}

VARIANTS = {
    'naive-addresses(ref)': dict(all_grouped=False, min_frames=1, naive=True),
    'base': dict(),
    'base+mask_basic': dict(mask_basic=True),
    'base+extcap': dict(extcap=True),
    'base+order': dict(order=True),
    'base+order+mask': dict(order=True, mask_basic=True),
    'base,no-group-bit-rule': dict(group_is_random=False),
    'all_grouped': dict(all_grouped=True),
    'all_grouped+mask': dict(all_grouped=True, mask_basic=True),
    'base+gate-70': dict(gate=-70),
    'base+gate_q0.1': dict(gate_q=0.1),
    'base+gate_q0.2': dict(gate_q=0.2),
    'base+linger30': dict(linger=30),
    'base+linger60': dict(linger=60),
    'base+chain_gap120': dict(chain=True, gap=120),
    'base+chain_gap300': dict(chain=True, gap=300),
    'base+min3': dict(min_frames=3),
}

def otsu(rssis):
    """Otsu's threshold on an RSSI histogram (1 dB bins): the gate between the near and the
    far mode, and the separability eta = between-class / total variance (0..1)."""
    h = collections.Counter(rssis)
    n = len(rssis)
    if n == 0:
        return None, 0.0
    mean = sum(rssis) / n
    var = sum((r - mean) ** 2 for r in rssis) / n
    best = (0.0, None)
    lo, hi = min(h), max(h)
    wa = sa = 0
    for t in range(lo, hi + 1):
        wa += h.get(t - 1, 0) if t > lo else 0
        sa += (t - 1) * h.get(t - 1, 0) if t > lo else 0
        wb = n - wa
        if wa == 0 or wb == 0:
            continue
        ma, mb = sa / wa, (mean * n - sa) / wb
        v = wa / n * wb / n * (ma - mb) ** 2
        if v > best[0]:
            best = (v, t)
    return best[1], (best[0] / var if var else 0.0)


FAR_MODE_DBM = -80


def learned(rssis):
    """The gate learned from an installation's signal levels: Otsu's threshold between its
    near and far mode, used only when the far mode lies at the edge of reception (mean at or
    below FAR_MODE_DBM); otherwise everything heard is near (e.g. one phone on a desk)."""
    g, _ = otsu(rssis)
    if g is None:
        return None
    far = [r for r in rssis if r < g]
    if not far or sum(far) / len(far) > FAR_MODE_DBM:
        return None
    return g


def final():
    """The chosen method: every address grouped by fingerprint, Otsu gate learned from the
    replayed frames (per file = each day replayed alone; installation = all lab days)."""
    print('== chosen method (all addresses grouped, single-frame groups dropped, Otsu gate) ==')
    lab_all = []
    for d in LAB:
        lab_all += load_lab(d)
    g_inst = learned([f['rssi'] for f in lab_all])
    for label, gate_for in (('gate per file', lambda fs: learned([f['rssi'] for f in fs])),
                            ('gate of the installation (%d dBm)' % g_inst, lambda fs: g_inst),
                            ('no gate', lambda fs: None)):
        per, empty, fit = [], [], []
        for d in LAB:
            fs = load_lab(d)
            g = gate_for(fs)
            for st, w in windows(fs).items():
                occ = w[0]['wocc']
                est = estimate(w, dict(all_grouped=True, gate=g))
                if occ >= 5:
                    per.append((d, st, occ, est))
                elif occ == 0:
                    empty.append((d, st, est))
        ok = [0.6 <= e / o <= 1.6 for _, _, o, e in per]
        cv = []
        for held in LAB[:2]:
            tr = [(o, e) for d, _, o, e in per if d != held]
            a = sum(o * e for o, e in tr) / sum(e * e for o, e in tr)
            cv += [abs(a * e - o) <= 0.3 * o for d, _, o, e in per if d == held]
        print(f'{label}: occupied windows {len(per)}, devices/person in 0.6-1.6: {sum(ok)}/{len(ok)}'
              f' ({100*sum(ok)/len(ok):.0f} %), median {statistics.median(e/o for *_, o, e in per):.2f};'
              f' empty windows {len(empty)}, max {max(e for *_, e in empty)},'
              f' > 2: {sum(e > 2 for *_, e in empty)}; line fitted on one occupied day judged on the other:'
              f' {100*sum(cv)/len(cv):.0f} % within 30 %')
        if os.environ.get('V') == '1':
            for d, st, o, e in per:
                print(f'   {d} {st} occ {o:5.1f} devices {e:3d} ratio {e/o:.2f}')
            for d, st, e in empty:
                print(f'   {d} {st} empty devices {e}')
    for name in PHONES:
        fs = load_phone(name)
        g = learned([f['rssi'] for f in fs])
        ws = windows(fs)
        print(f'  {name:18s} gate {g} dBm, devices per 15-min window: {[estimate(w, dict(all_grouped=True, gate=g)) for w in ws.values()]}')
    for k, lo, hi in ((2, 2, 4), (3, 3, 5)):
        res = []
        for combo in itertools.combinations(PHONES, k):
            m = merge([load_phone(n) for n in combo])
            g = learned([f['rssi'] for f in m])
            res.append(max(estimate(w, dict(all_grouped=True, gate=g)) for w in windows(m).values()))
        print(f'  merged {k} at a time: {len(res)} combinations, max per window in {lo}-{hi}:'
              f' {sum(lo <= x <= hi for x in res)}/{len(res)}, distribution {sorted(collections.Counter(res).items())}')


def minutes():
    """The product's way: one-minute windows (the live agent's), each group's count per
    minute, and a 15-minute figure as the aggregator's union of slot keys gives it (per
    fingerprint, the largest count of any of its minutes). Also the cadence of real phones:
    how far apart their addresses and their scans (addresses within 0.5 s of each other) are."""
    fp = lambda f: fingerprint(f['ies'], {})

    def scans(frames):
        starts = sorted({f['sa']: f['t'] for f in reversed(frames)}.values())
        return sum(1 for i, t in enumerate(starts) if i == 0 or t - starts[i - 1] > 0.5)

    def union(frames, count):
        out = {}
        for st, w in windows(frames).items():
            best = collections.Counter()
            for m in windows(w, 60).values():
                groups = collections.defaultdict(list)
                for f in m:
                    groups[fp(f)].append(f)
                for k, fs in groups.items():
                    if len(fs) >= 2:
                        best[k] = max(best[k], count(fs))
            out[st] = sum(best.values())
        return out

    def conc(fs):
        addrs = collections.defaultdict(list)
        for f in fs:
            addrs[f['sa']].append(f)
        return concurrency(addrs, {})

    for label, count in (('concurrency', conc), ('scans', scans),
                         ('addresses', lambda fs: len({f['sa'] for f in fs}))):
        per, empty = [], []
        for d in LAB:
            occ = {int(f['t'] // WIN) * WIN: f['wocc'] for f in load_lab(d)}
            fs = [f for f in load_lab(d) if f['rssi'] is None or f['rssi'] >= -72]
            for st, n in union(fs, count).items():
                if occ.get(st, 0) >= 5:
                    per.append(n / occ[st])
                elif occ.get(st) == 0:
                    empty.append(n)
        ok = sum(0.6 <= r <= 1.6 for r in per)
        phones = [max(union(load_phone(n), count).values()) for n in PHONES]
        print(f'{label:12s} lab (gate -72 dBm): {ok}/{len(per)} occupied windows at 0.6-1.6 per person,'
              f' median {statistics.median(per):.2f}; empty max {max(empty)}; one phone max {phones}')
    for name in PHONES:
        fs = load_phone(name)
        starts = sorted({f['sa']: f['t'] for f in reversed(fs)}.values())
        gaps = sorted(b - a for a, b in zip(starts, starts[1:]))
        if len(gaps) < 5:
            continue
        q = lambda p: gaps[int(p * (len(gaps) - 1))]
        print(f'  {name:16s} {len(starts)} addresses, {scans(fs)} scans; gap between addresses'
              f' p10 {q(.1):.3f} s, median {q(.5):.2f} s, p90 {q(.9):.1f} s')


SCAN_JOIN = 0.15   # s: a real iPhone's addresses within one scan are 20-110 ms apart
ADDRESS_SCAN_GAP = 1.0   # s: one address's frames further apart are separate scans


def group_stats(frames):
    """Per fingerprint group of one window (frames as (t, address, fingerprint, rssi)): its
    scans (the group's frames joined while less than SCAN_JOIN apart), its concurrency, how
    many scans each address was heard in, and the spread (standard deviation, dB) of its
    scans' mean RSSI."""
    groups = collections.defaultdict(list)
    for t, a, fp, r in frames:
        groups[fp].append((t, a, r))
    out = []
    for fp, fs in groups.items():
        if len(fs) < 2:
            continue
        fs.sort()
        per = collections.defaultdict(list)
        for t, a, _ in fs:
            per[a].append(t)
        k = [1 + sum(1 for x, y in zip(ts, ts[1:]) if y - x > ADDRESS_SCAN_GAP) for ts in per.values()]
        scan_r, cur = [], [fs[0][2]]
        busy, first = 0.0, fs[0][0]
        for (x, _, _), (y, _, r) in zip(fs, fs[1:]):
            if y - x > SCAN_JOIN:
                scan_r.append(statistics.mean(cur))
                cur = []
                busy += x - first + SCAN_JOIN
                first = y
            cur.append(r)
        scan_r.append(statistics.mean(cur))
        busy += fs[-1][0] - first + SCAN_JOIN
        conc = concurrency({a: [dict(t=t) for t in ts] for a, ts in per.items()}, {})
        sd = statistics.pstdev(scan_r) if len(scan_r) > 1 else 0.0
        # Scans over the minute's live time (what the join did not cover): the paralyzable
        # dead-time correction, so that scans of different phones run together are counted.
        live = max(60.0 - busy, 6.0)
        live_scans = min(len(scan_r) * 60.0 / live, len(fs))   # every scan has a frame
        out.append(dict(fp=fp, scans=len(scan_r), live_scans=live_scans, conc=conc, k=k, sd=sd))
    return out


def cadence_of(stats):
    """Scans of one device in a window, given it was heard: learned from the addresses heard
    in two or more scans (hardware and Android-like addresses; an iOS-like address lasts one
    scan), their scan count taken as Poisson truncated below 2, E[k | k >= 2] =
    lam (1 - e^-lam) / (1 - e^-lam - lam e^-lam); returns E[k | k >= 1] = lam / (1 - e^-lam)."""
    ks = [k for st in stats for g in st for k in g['k'] if k >= 2]
    if not ks:
        return None
    m = sum(ks) / len(ks)
    f = lambda l: l * (1 - math.exp(-l)) / (1 - math.exp(-l) - l * math.exp(-l))
    lo, hi = 1e-6, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < m else (lo, mid)
    return lo / (1 - math.exp(-lo))


def cadence_count(st, rho):
    """A group's devices under the cadence rule: its scans over one device's scans, never
    fewer than its concurrency."""
    return sum(max(g['conc'], g['scans'] / rho) for g in st)


def sim_minutes(sim_csv):
    """The simulator's frames CSV per (sensor, minute): group stats, and the true devices heard."""
    rows, heard = collections.defaultdict(list), collections.defaultdict(set)
    with open(sim_csv) as fh:
        for r in csv.DictReader(fh):
            t = int(r['t_us']) / 1e6
            w = (int(r['sensor']), int(t // 60) * 60)
            rows[w].append((t, r['address'], r['fingerprint'], int(r['rssi'])))
            heard[w].add(r['device'])
    return {w: group_stats(fs) for w, fs in rows.items()}, heard


def cadence(sim_csv):
    """The cadence rule (what dense crowds would need) against the simulator's true devices
    and the lab's head counts, next to the agent's concurrency rule."""
    stats, heard = sim_minutes(sim_csv)
    for rule in ('concurrency', 'cadence'):
        ratios, rhos = [], []
        for sensor in sorted({w[0] for w in stats}):
            ws = [w for w in stats if w[0] == sensor and len(heard[w]) >= 10]
            rho = cadence_of([stats[w] for w in stats if w[0] == sensor])
            rhos.append(rho)
            for w in ws:
                n = sum(g['conc'] for g in stats[w]) if rule == 'concurrency' else cadence_count(stats[w], rho)
                ratios.append(n / len(heard[w]))
        ratios.sort()
        q = lambda p: ratios[int(p * (len(ratios) - 1))]
        print(f'simulator, {rule:11s}: {len(ratios)} sensor-minutes with >= 10 devices heard, estimate/heard'
              f' p10 {q(.1):.2f} median {q(.5):.2f} p90 {q(.9):.2f}, within +-15 %:'
              f' {sum(.85 <= x <= 1.15 for x in ratios)}; learned cadence per sensor {[round(r, 2) for r in rhos]}')
    lab = {d: [f for f in load_lab(d) if f['rssi'] is None or f['rssi'] >= -72] for d in LAB}
    minutes = {d: {m: group_stats([(f['t'], f['sa'], fingerprint(f['ies'], {}), f['rssi'] or 0) for f in fs])
                   for m, fs in windows(lab[d], 60).items()} for d in LAB}
    rho = cadence_of([st for d in LAB for st in minutes[d].values()])
    for rule in ('concurrency', 'cadence'):
        per = []
        for d in LAB:
            occ = {int(f['t'] // WIN) * WIN: f['wocc'] for f in lab[d]}
            best = collections.defaultdict(collections.Counter)
            for m, st in minutes[d].items():
                for g in st:
                    n = g['conc'] if rule == 'concurrency' else cadence_count([g], rho)
                    b = best[int(m // WIN) * WIN]
                    b[g['fp']] = max(b[g['fp']], n)
            per += [sum(b.values()) / occ[w] for w, b in best.items() if occ.get(w, 0) >= 5]
        print(f'lab, {rule:11s}: occupied windows at 0.6-1.6 per person {sum(.6 <= x <= 1.6 for x in per)}/{len(per)},'
              f' median {statistics.median(per):.2f} (learned cadence {rho:.2f} scans per device-minute)')
    # What the lab's groups whose addresses never recur (iOS-like) scan, per minute and group.
    single = [g['scans'] for d in LAB for st in minutes[d].values() for g in st if max(g['k']) == 1 and g['conc'] == 1]
    print(f'lab: groups of one concurrent address whose addresses last one scan: {len(single)}, scans per minute'
          f' median {statistics.median(single)}, mean {statistics.mean(single):.2f}')


def spread(sim_csv):
    """The RSSI-spread switch between the concurrency and cadence rules (research README)."""
    stats, heard = sim_minutes(sim_csv)
    lab = {d: [f for f in load_lab(d) if f['rssi'] is None or f['rssi'] >= -72] for d in LAB}
    minutes = {d: {m: group_stats([(f['t'], f['sa'], fingerprint(f['ies'], {}), f['rssi'] or 0) for f in fs])
                   for m, fs in windows(lab[d], 60).items()} for d in LAB}
    rho_lab = cadence_of([st for d in LAB for st in minutes[d].values()])
    sds_lab = sorted(g['sd'] for d in LAB for st in minutes[d].values() for g in st if g['scans'] >= 3)
    sds_sim = sorted(g['sd'] for st in stats.values() for g in st if g['scans'] >= 3)
    q = lambda xs, p: xs[int(p * (len(xs) - 1))]
    print('lab group sd p10/50/90', [round(q(sds_lab, p), 1) for p in (.1, .5, .9)], 'sim', [round(q(sds_sim, p), 1) for p in (.1, .5, .9)])
    phones = {n: {m: group_stats([(f['t'], f['sa'], fingerprint(f['ies'], {}), f['rssi'] or 0) for f in fs]) for m, fs in windows(load_phone(n), 60).items()} for n in PHONES}
    sds_ph = sorted(g['sd'] for n in PHONES for st in phones[n].values() for g in st if g['scans'] >= 3)
    print('one-phone group sd p10/50/90/max', [round(q(sds_ph, p), 1) for p in (.1, .5, .9, 1)])
    def count(g, rho, T, min_scans):
        if g['sd'] > T and g['scans'] >= min_scans:
            return max(g['conc'], g['scans'] / rho)
        return g['conc']
    for T in (2, 3, 4, 5, 6, 8, 99):
      for min_scans in (3, 6):
        ratios = []
        for sensor in sorted({w[0] for w in stats}):
            ws = [w for w in stats if w[0] == sensor and len(heard[w]) >= 10]
            rho = cadence_of([stats[w] for w in stats if w[0] == sensor])
            for w in ws:
                ratios.append(sum(count(g, rho, T, min_scans) for g in stats[w]) / len(heard[w]))
        ratios.sort()
        per, empty = [], []
        for d in LAB:
            occ = {int(f['t'] // WIN) * WIN: f['wocc'] for f in lab[d]}
            best = collections.defaultdict(collections.Counter)
            for m, st in minutes[d].items():
                for g in st:
                    b = best[int(m // WIN) * WIN]
                    b[g['fp']] = max(b[g['fp']], count(g, rho_lab, T, min_scans))
            per += [sum(b.values()) / occ[w] for w, b in best.items() if occ.get(w, 0) >= 5]
            empty += [sum(b.values()) for w, b in best.items() if occ.get(w, 1) == 0]
        ph = []
        for n in PHONES:
            rho_p = cadence_of(list(phones[n].values())) or rho_lab
            ph.append(max(sum(count(g, rho_lab, T, min_scans) for g in st) for st in phones[n].values()))
        print(f'T={T:3} min_scans={min_scans}: sim median {q(ratios,.5):.2f} p10 {q(ratios,.1):.2f} p90 {q(ratios,.9):.2f} within15 {sum(.85<=x<=1.15 for x in ratios)}/{len(ratios)}; '
              f'lab {sum(.6<=x<=1.6 for x in per)}/{len(per)} median {statistics.median(per):.2f} empty max {max(empty):.1f}; phones max {[round(x,1) for x in ph]}')


CROWD_DEVICES_PER_GROUP = 3.0   # devices' worth of scans per group, over a minute's groups but its busiest
CROWD_MIN_GROUPS = 3
CROWD_MEDIAN_DEVICES = 2.0      # and the median group's devices' worth


def crowd_worth(st, rho):
    """A minute's devices' worth of scans per group, averaged over its groups but the busiest."""
    w = sorted(g['live_scans'] / rho for g in st)[:-1]
    return sum(w) / max(1, len(w))


def crowd_count(st, rho):
    """Per fingerprint, the devices of one minute under the agent's rule: concurrency, and in a
    minute whose groups (three or more) but the busiest average CROWD_DEVICES_PER_GROUP devices'
    worth of scans, at least round(scans / cadence), never more than the group's addresses."""
    crowd = (len(st) >= CROWD_MIN_GROUPS and crowd_worth(st, rho) >= CROWD_DEVICES_PER_GROUP
             and statistics.median(g['live_scans'] / rho for g in st) >= CROWD_MEDIAN_DEVICES)
    return {g['fp']: max(g['conc'], min(round(g['live_scans'] / rho), len(g['k'])) if crowd else 0) for g in st}


def crowd(sim_csv):
    """The crowd rule the agent adopted (research README, 2026-12-04) against the simulator's
    true devices per sensor-minute, the lab's head counts (15-minute union of minutes) and the
    one-phone captures, alone and merged two at a time; the cadence learned from all windows."""
    stats, heard = sim_minutes(sim_csv)
    per_sensor = collections.defaultdict(list)
    for sensor in sorted({w[0] for w in stats}):
        rho = cadence_of([stats[w] for w in stats if w[0] == sensor])
        for w in sorted(w for w in stats if w[0] == sensor and len(heard[w]) >= 10):
            per_sensor[sensor].append(sum(crowd_count(stats[w], rho).values()) / len(heard[w]))
    for sensor, r in sorted(per_sensor.items()):
        print(f'simulator sensor {sensor}: {sum(.85 <= x <= 1.15 for x in r)}/{len(r)} minutes within +-15 %,'
              f' median {statistics.median(r):.2f}')
    lab = {d: [f for f in load_lab(d) if f['rssi'] is None or f['rssi'] >= -72] for d in LAB}
    minutes = {d: {m: group_stats([(f['t'], f['sa'], fingerprint(f['ies'], {}), f['rssi'] or 0) for f in fs])
                   for m, fs in windows(lab[d], 60).items()} for d in LAB}
    rho = cadence_of([st for d in LAB for st in minutes[d].values()])
    worth = [crowd_worth(st, rho) for d in LAB for st in minutes[d].values() if len(st) >= CROWD_MIN_GROUPS]
    per, empty = [], []
    for d in LAB:
        occ = {int(f['t'] // WIN) * WIN: f['wocc'] for f in lab[d]}
        best = collections.defaultdict(collections.Counter)
        for m, st in minutes[d].items():
            for fp, n in crowd_count(st, rho).items():
                b = best[int(m // WIN) * WIN]
                b[fp] = max(b[fp], n)
        per += [sum(b.values()) / occ[w] for w, b in best.items() if occ.get(w, 0) >= 5]
        empty += [sum(b.values()) for w, b in best.items() if occ.get(w, 1) == 0]
    print(f'lab: cadence {rho:.2f} scans per device-minute; busiest minute {max(worth):.2f} devices\' worth per group;'
          f' occupied windows at 0.6-1.6 per person {sum(.6 <= x <= 1.6 for x in per)}/{len(per)},'
          f' median {statistics.median(per):.2f}; empty max {max(empty)}')
    def most(frames):
        return max(sum(crowd_count(group_stats([(f['t'], f['sa'], fingerprint(f['ies'], {}), f['rssi'] or 0) for f in fs]), rho).values())
                   for fs in windows(frames, 60).values())
    print('one phone, most devices in a minute:', max(most(load_phone(n)) for n in PHONES),
          '; merged two at a time:', max(most(merge([load_phone(a), load_phone(b)])) for a, b in itertools.combinations(PHONES, 2)))


if __name__ == "__main__" and sys.argv[1:2] == ["crowd"]:
    crowd(sys.argv[2])
elif __name__ == "__main__" and sys.argv[1:2] == ["spread"]:
    spread(sys.argv[2])
elif __name__ == "__main__" and sys.argv[1:] == ["minutes"]:
    minutes()
elif __name__ == "__main__" and sys.argv[1:2] == ["cadence"]:
    cadence(sys.argv[2])
elif __name__ == "__main__" and sys.argv[1:] == ["final"]:
    final()
elif __name__ == "__main__" and sys.argv[1:2] == ["occupancy"]:
    occupancy_table(sys.argv[2])
elif __name__ == "__main__":
    names = sys.argv[1:] or list(VARIANTS)
    for n in names:
        opts = VARIANTS[n]
        if opts.get('naive'):
            continue
        r = evaluate(opts, verbose=os.environ.get('V') == '1')
        print(f'{n:28s}', ' '.join(f'{k}={v:.2f}' if isinstance(v, float) else f'{k}={v}' for k, v in r.items()))
