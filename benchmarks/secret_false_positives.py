"""How often the policy engine takes gitleaks' curated false positives for secrets.

gitleaks keeps, beside each rule, the strings that rule must *not* report (``fps := []string{…}``
/ ``r.FPs = …`` in ``cmd/generate/config/rules/*.go``): placeholders, documentation
examples, near-misses of each token format. This reads those string literals from a
gitleaks checkout (not shipped here: pass ``--rules``), adds each as one line of its own
file in one diff, and counts the files where CASM reports ``SECRET_LIKE`` (a dismissed
placeholder is an ``info`` signal and does not count). Elements built in code
(``secrets.NewSecret(…)``, another slice) are not literals and are left out, and said.

    python benchmarks/secret_false_positives.py --rules ~/src/gitleaks/cmd/generate/config/rules [--show] [--json]

Exits 1 when the rate is above ``--max-rate`` (default 0.03, the issue's bar).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from casm_dagster.policy.diff import parse_diff  # noqa: E402
from casm_dagster.policy.engine import PolicyEngine  # noqa: E402
from casm_dagster.policy.keyed_hash import KeyedHasher  # noqa: E402
from casm_dagster.policy.ruleset import load_ruleset  # noqa: E402
from casm_dagster.policy.sources import PatchOnly  # noqa: E402

# Where an FP list starts: `fps := []string{`, `r.FPs = []string{`, `FPs: []string{`,
# `r.FPs = append(fps, …)`, or a map of file name to text: `fps := map[string]string{`.
_FP_START = re.compile(
    r"\b(?:fps|FPs|falsePositives)\s*(?::=|=|:)\s*(?:\[\]string\s*\{|append\s*\(|(?P<map>map\[string\]string\s*\{))"
)
_TOKEN = re.compile(
    r'(?P<raw>`[^`]*`)|(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<comment>//[^\n]*|/\*.*?\*/)'
    r"|(?P<open>[({\[])|(?P<close>[)}\]])|(?P<comma>,)|(?P<plus>\+)|(?P<space>\s+)|(?P<other>.)",
    re.S,
)
_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{3})|(.))", re.S)
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}


def _go_string(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1].replace("\r", "")

    def one(m: re.Match[str]) -> str:
        hex2, u4, u8, octal, simple = m.groups()
        if hex2 or octal:
            return chr(int(hex2, 16) if hex2 else int(octal, 8))
        if u4 or u8:
            return chr(int(u4 or u8, 16))
        return _SIMPLE.get(simple, "\\" + simple)

    return _ESCAPE.sub(one, token[1:-1])


@dataclass(frozen=True)
class Sample:
    source: str  # rule file and position of the list
    value: str


def false_positives(text: str, source: str) -> tuple[list[Sample], int]:
    """The string literals of every FP list in one Go file, and how many elements were
    not plain literals (built in code)."""
    samples: list[Sample] = []
    built = 0
    for start in _FP_START.finditer(text):
        depth, parts, literal = 1, [], True
        for token in _TOKEN.finditer(text, start.end()):
            kind = token.lastgroup
            if kind in ("space", "comment"):
                continue
            if kind == "open":
                depth += 1
            elif kind == "close":
                depth -= 1
            if depth == 0 or (kind == "comma" and depth == 1):
                if parts and literal:
                    samples.append(Sample(f"{source}:{text.count(chr(10), 0, start.start()) + 1}", "".join(parts)))
                elif parts or not literal:
                    built += 1
                parts, literal = [], True
                if depth == 0:
                    break
            elif depth == 1 and kind in ("raw", "str"):
                parts.append(_go_string(token.group()))
            elif depth == 1 and start.group("map") and token.group() == ":" and literal:
                parts = []  # the key (a file name); the text is the value
            elif not (depth == 1 and kind == "plus"):
                literal = False
    return samples, built


def evaluate(samples: list[Sample]) -> dict[int, str]:
    """Index of each sample CASM reports as a secret -> the pattern that reported it."""
    chunks = []
    for i, sample in enumerate(samples):
        lines = sample.value.split("\n")
        body = "".join(f"+{line}\n" for line in lines)
        chunks.append(
            f"diff --git a/fp/{i}.txt b/fp/{i}.txt\nnew file mode 100644\n--- /dev/null\n+++ b/fp/{i}.txt\n"
            f"@@ -0,0 +1,{len(lines)} @@\n{body}"
        )
    engine = PolicyEngine(load_ruleset("default.devtools"), KeyedHasher(b"benchmark-key-0123456789abcdef"))
    result = engine.evaluate(parse_diff("".join(chunks).encode()), PatchOnly())
    flagged: dict[int, str] = {}
    for signal in result.signals:
        if signal.reason_code == "SECRET_LIKE":
            flagged.setdefault(int(Path(signal.file).stem), signal.evidence.pattern_id)
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, required=True, help="gitleaks' cmd/generate/config/rules directory")
    parser.add_argument("--max-rate", type=float, default=0.03)
    parser.add_argument("--show", action="store_true", help="print each reported value in full")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    files = sorted(p for p in args.rules.iterdir() if p.name.endswith((".go", ".go.txt")))
    if not files:
        sys.exit(f"no .go files in {args.rules}: pass gitleaks' cmd/generate/config/rules")
    samples: list[Sample] = []
    built = 0
    for path in files:
        found, skipped = false_positives(path.read_text(encoding="utf-8"), path.name.removesuffix(".txt"))
        samples += found
        built += skipped
    # The same string listed under two rules is one sample.
    unique = list({s.value: s for s in samples}.values())

    def shown(value: str) -> str:  # a reported value may be a live token: shortened unless --show
        return value if args.show else value[:12] + "…"

    flagged = evaluate(unique)
    rate = len(flagged) / len(unique) if unique else 0.0
    report = {
        "files": len(files),
        "false_positives": len(unique),
        "built_in_code_skipped": built,
        "reported_as_secret": len(flagged),
        "rate": round(rate, 4),
        "by_pattern": dict(Counter(flagged.values()).most_common()),
        "reported": [
            {"source": unique[i].source, "pattern": p, "value": shown(unique[i].value)}
            for i, p in sorted(flagged.items())
        ],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['false_positives']} curated false positives from {len(files)} rule files "
              f"({built} built in code, left out)")  # fmt: skip
        print(f"reported as secrets: {len(flagged)} ({rate:.1%}; bar {args.max_rate:.0%})")
        for item in report["reported"]:
            print(f"  {item['pattern']:28} {item['source']:28} {item['value']!r}")
    sys.exit(1 if rate > args.max_rate else 0)


if __name__ == "__main__":
    main()
