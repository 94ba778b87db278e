"""How often each player rolled doubles, and how often the commentator had to be asked twice
(a post-process script: runs only with --allow-scripts).

Called as Octobatch calls post-process scripts, `python tools/doubles.py RUN_DIR`, its standard
output captured into outputs/doubles.txt. Reads the Octobatch-compatible view.
"""

import json
import sys
from collections import Counter
from pathlib import Path


def main():
    run_dir = Path(sys.argv[1])
    games, doubles, retried = Counter(), Counter(), Counter()
    for path in sorted(run_dir.glob("chunks/chunk_*/commentate_validated.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            games[record["player"]] += 1
            doubles[record["player"]] += bool(record["doubles"])
    for path in sorted(run_dir.glob("chunks/chunk_*/commentate_failures.jsonl")):
        for line in path.read_text().splitlines():
            retried[json.loads(line)["player"]] += 1
    print(f"{'player':<8} {'games':>5} {'doubles':>7} {'re-asked':>8}")
    for player in sorted(games):
        print(f"{player:<8} {games[player]:>5} {doubles[player]:>7} {retried[player]:>8}")


if __name__ == "__main__":
    main()
