"""The league table (a run-scope step script: runs only with --allow-scripts).

Called as Octobatch calls run-scope scripts:
    python tools/leaderboard.py --run-dir RUN --step-name leaderboard --config RUN/config/config.yaml
Reads the final step's validated records from the Octobatch-compatible view (MANIFEST.json and
chunks/chunk_*/<step>_validated.jsonl) and writes RUN/outputs/leaderboard.txt.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--step-name", required=True)
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args()
    last = json.loads((args.run_dir / "MANIFEST.json").read_text())["pipeline"][-1]
    totals = defaultdict(list)
    for path in sorted(args.run_dir.glob(f"chunks/chunk_*/{last}_validated.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            totals[record["player"]].append(record["total"])
    lines = [f"{'player':<8} {'games':>5} {'points':>6}"]
    for player, points in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"{player:<8} {len(points):>5} {sum(points):>6}")
    out = args.run_dir / "outputs" / "leaderboard.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"leaderboard of {len(totals)} players written to {out}")


if __name__ == "__main__":
    main()
