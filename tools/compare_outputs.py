"""Compares the JSON/CSV outputs of two snapshots written by tools/outputs_snapshot.sh.

    python3 tools/compare_outputs.py /tmp/snap-before /tmp/snap-after

JSON files are compared as values (key order ignored), with timings (`seconds`, `images_per_second`)
dropped; CSV and JSONL line by line, timing lines aside; every other file (checkpoints, masks, PNG,
SVG, report.html) byte for byte. Files present on one side only are listed. Prints every
difference; exit 1 when any."""
import json, os, sys

TIMING = {"seconds", "images_per_second", "wall_seconds", "elapsed"}

def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in TIMING}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v

def diff(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a: out.append(f"{path}.{k}: only after: {json.dumps(b[k])[:200]}")
            elif k not in b: out.append(f"{path}.{k}: only before: {json.dumps(a[k])[:200]}")
            else: diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)): diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {json.dumps(a)[:200]} -> {json.dumps(b)[:200]}")

def files(root):
    for d, _, fs in os.walk(root):
        for f in fs:
            if f != "log.txt":
                yield os.path.relpath(os.path.join(d, f), root)

def main(before, after):
    fa, fb = set(files(before)), set(files(after))
    out = [f"{f}: only before" for f in sorted(fa - fb)] + [f"{f}: only after" for f in sorted(fb - fa)]
    for f in sorted(fa & fb):
        pa, pb = os.path.join(before, f), os.path.join(after, f)
        if f.endswith(".json"):
            d = []
            diff(strip(json.load(open(pa))), strip(json.load(open(pb))), f, d)
            out += d
        elif not f.endswith((".csv", ".jsonl")):
            if open(pa, "rb").read() != open(pb, "rb").read(): out.append(f"{f}: bytes differ")
        else:
            la = [l for l in open(pa) if "seconds" not in l]
            lb = [l for l in open(pb) if "seconds" not in l]
            if f.endswith(".jsonl"):
                la = [json.dumps(strip(json.loads(l)), sort_keys=True) for l in la]
                lb = [json.dumps(strip(json.loads(l)), sort_keys=True) for l in lb]
            if la != lb: out.append(f"{f}: contents differ")
    print("\n".join(out) if out else f"identical: {len(fa & fb)} files")
    return 1 if out else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
