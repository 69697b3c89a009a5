"""Compare two `refnet bench` JSON results case by case: what a kernel change did to each ratio.

    python -m bench.compare BEFORE.json AFTER.json

Prints a Markdown table (case, refnet ms before/after, ratio before/after, x stream before/after);
ratio = peer ms / refnet ms, each measured side by side with its peer in its own run.
"""

import argparse
import json


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def compare_table(before: dict, after: dict) -> str:
    old = {r["name"]: r for r in before["rows"]}
    lines = ["| case | ms before | ms after | ratio before | ratio after | x stream before | x stream after |",
             "|---|---|---|---|---|---|---|"]
    for r in after["rows"]:
        b = old.get(r["name"], {})
        lines.append(f"| {r['name']} | {_fmt(b.get('ms'), '.3f')} | {_fmt(r['ms'], '.3f')} | "
                     f"{_fmt(b.get('ratio'), '.2f')} | {_fmt(r['ratio'], '.2f')} | "
                     f"{_fmt(b.get('x_stream'), '.2f')} | {_fmt(r['x_stream'], '.2f')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    args = parser.parse_args(argv)
    with open(args.before) as f:
        before = json.load(f)
    with open(args.after) as f:
        after = json.load(f)
    for label, result in (("before", before), ("after", after)):
        meta = result["meta"]
        print(f"- {label}: {meta['started_utc']} UTC, {meta.get('git') or 'commit unknown'}, load average at start "
              f"{', '.join(f'{v:.1f}' for v in meta['load_average_start'])}")
    print()
    print(compare_table(before, after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
