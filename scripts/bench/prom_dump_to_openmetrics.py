#!/usr/bin/env python3
"""Turns the output of `promtool tsdb dump` (Prometheus 2.x:
`{__name__="m", a="b"} <value> <timestamp ms>` per line) into an OpenMetrics
text file that `promtool tsdb create-blocks-from openmetrics` and
`tidemark backfill --from-openmetrics` both load: one line per sample,
metric families contiguous, timestamps in seconds with milliseconds, values
and label values kept exactly as Prometheus printed them.

Usage: prom_dump_to_openmetrics.py DUMP OUT  (prints the sample count)
"""
import re
import sys

PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def convert(line):
    line = line.rstrip("\n")
    labels, value, ts = line.rsplit(" ", 2)
    name, rest = None, []
    for n, v in PAIR.findall(labels):
        if n == "__name__":
            name = v
        else:
            rest.append(f'{n}="{v}"')
    if name is None:
        raise ValueError(f"no metric name: {line!r}")
    ms = int(ts)
    sign, ms = ("-", -ms) if ms < 0 else ("", ms)
    body = f"{name}{{{','.join(rest)}}}" if rest else name
    return (name, ",".join(rest)), f"{body} {value} {sign}{ms // 1000}.{ms % 1000:03d}\n"


def main():
    dump, out = sys.argv[1], sys.argv[2]
    series = {}
    with open(dump) as f:
        for line in f:
            if line.strip():
                key, text = convert(line)
                series.setdefault(key, []).append(text)
    n = 0
    with open(out, "w") as f:
        # Series by (name, labels): a metric family's series are contiguous;
        # each series' samples stay in the dump's (time) order.
        for key in sorted(series):
            f.writelines(series[key])
            n += len(series[key])
        f.write("# EOF\n")
    print(n)


if __name__ == "__main__":
    main()
