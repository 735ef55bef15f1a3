"""How often the policy engine takes gitleaks' curated false positives for secrets, and
whether it still reports gitleaks' true positives in the formats it knows.

gitleaks keeps, beside each rule, the strings that rule must *not* report (``fps := []string{…}``
/ ``r.FPs = …`` in ``cmd/generate/config/rules/*.go``): placeholders, documentation
examples, near-misses of each token format; and those it must report (``tps``). This
reads those string literals from a gitleaks checkout (not shipped here: pass ``--rules``),
adds each as one line of its own file in one diff, and counts the false positives CASM
reports as ``SECRET_LIKE`` (a dismissed placeholder is an ``info`` signal and does not
count), and the true positives one of CASM's patterns matches but that it dismisses as
placeholders (each is lost recall). Elements built in code (``secrets.NewSecret(…)``,
another slice) are not literals and are left out, and said.

    python benchmarks/secret_false_positives.py --rules ~/src/gitleaks/cmd/generate/config/rules [--show] [--json]

Exits 1 when the false-positive rate is above ``--max-rate`` (default 0.03, the issue's
bar); the dismissed true positives are listed, to be read (some are fakes gitleaks keeps
as true positives because its regex matches them: ``sk-ant-api03-abc123xyz-…``).
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

# Where a list starts: `fps := []string{`, `r.FPs = []string{`, `FPs: []string{`,
# `r.FPs = append(fps, …)`, or a map of file name to text: `fps := map[string]string{`
# (and the same for tps / TPs, the strings a rule must report).
_LIST_START = {
    kind: re.compile(
        rf"\b(?:{names})\s*(?::=|=|:)\s*(?:\[\]string\s*\{{|append\s*\(|(?P<map>map\[string\]string\s*\{{))"
    )
    for kind, names in (("fps", "fps|FPs|falsePositives"), ("tps", "tps|TPs|truePositives"))
}
# gitleaks' own generator of true positives: GenerateSampleSecrets("id", "<the secret>").
_GENERATED = re.compile(r'GenerateSampleSecrets?\(\s*(?:"[^"\n]*"|`[^`]*`)\s*,\s*("(?:[^"\\\n]|\\.)*"|`[^`]*`)\s*\)')
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


def listed(text: str, source: str, kind: str = "fps") -> tuple[list[Sample], int]:
    """The string literals of every ``kind`` list (fps, tps) in one Go file, and how many
    elements were not plain literals (built in code)."""
    samples: list[Sample] = []
    built = 0

    def at(pos: int) -> str:
        return f"{source}:{text.count(chr(10), 0, pos) + 1}"

    if kind == "tps":
        samples += [Sample(at(call.start()), _go_string(call.group(1))) for call in _GENERATED.finditer(text)]
    for start in _LIST_START[kind].finditer(text):
        depth, parts, literal = 1, [], True
        for token in _TOKEN.finditer(text, start.end()):
            what = token.lastgroup
            if what in ("space", "comment"):
                continue
            if what == "open":
                depth += 1
            elif what == "close":
                depth -= 1
            if depth == 0 or (what == "comma" and depth == 1):
                if parts and literal:
                    samples.append(Sample(at(start.start()), "".join(parts)))
                elif parts or not literal:
                    built += 1
                parts, literal = [], True
                if depth == 0:
                    break
            elif depth == 1 and what in ("raw", "str"):
                parts.append(_go_string(token.group()))
            elif depth == 1 and start.group("map") and token.group() == ":" and literal:
                parts = []  # the key (a file name); the text is the value
            elif not (depth == 1 and what == "plus"):
                literal = False
    return samples, built


def evaluate(samples: list[Sample]) -> dict[int, tuple[str, str]]:
    """Index of each sample a secret pattern matched -> (pattern or reason, "secret" when
    it counts or "dismissed" when it was dismissed as a placeholder)."""
    chunks = []
    for i, sample in enumerate(samples):
        lines = sample.value.split("\n")
        body = "".join(f"+{line}\n" for line in lines)
        chunks.append(
            f"diff --git a/s/{i}.txt b/s/{i}.txt\nnew file mode 100644\n--- /dev/null\n+++ b/s/{i}.txt\n"
            f"@@ -0,0 +1,{len(lines)} @@\n{body}"
        )
    engine = PolicyEngine(load_ruleset("default.devtools"), KeyedHasher(b"benchmark-key-0123456789abcdef"))
    result = engine.evaluate(parse_diff("".join(chunks).encode()), PatchOnly())
    seen: dict[int, tuple[str, str]] = {}
    for signal in result.signals:
        index = int(Path(signal.file).stem)
        if signal.reason_code == "SECRET_LIKE":
            seen[index] = (signal.evidence.pattern_id, "secret")
        elif signal.reason_code == "SECRET_PLACEHOLDER" and index not in seen:
            seen[index] = (signal.message, "dismissed")
    return seen


def gather(texts: dict[Path, str], kind: str) -> tuple[list[Sample], int]:
    """Every ``kind`` literal in the rule files (path -> text), the same string under two
    rules once."""
    samples: list[Sample] = []
    built = 0
    for path, text in sorted(texts.items()):
        found, skipped = listed(text, path.name.removesuffix(".txt"), kind)
        samples += found
        built += skipped
    return list({s.value: s for s in samples}.values()), built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rules", type=Path, nargs="+", required=True, help="gitleaks' cmd/generate/config/rules directory"
    )
    parser.add_argument("--max-rate", type=float, default=0.03)
    parser.add_argument("--show", action="store_true", help="print each reported value in full")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    files = [p for d in args.rules for p in d.iterdir() if p.name.endswith((".go", ".go.txt"))]
    if not files:
        sys.exit(f"no .go files in {' '.join(map(str, args.rules))}: pass gitleaks' cmd/generate/config/rules")
    texts = {p: p.read_text(encoding="utf-8") for p in files}  # by path: two dirs may share names

    def shown(value: str) -> str:  # a reported value may be a live token: shortened unless --show
        return value if args.show else value[:12] + "…"

    fps, built = gather(texts, "fps")
    flagged = {i: p for i, (p, how) in evaluate(fps).items() if how == "secret"}
    rate = len(flagged) / len(fps) if fps else 0.0
    # The must-report strings in a format CASM knows (one of its patterns matched): each
    # must still count, not be dismissed as a placeholder.
    tps, _ = gather(texts, "tps")
    matched = evaluate(tps)
    lost = {i: why for i, (why, how) in matched.items() if how == "dismissed"}
    report = {
        "files": len(files),
        "false_positives": len(fps),
        "built_in_code_skipped": built,
        "reported_as_secret": len(flagged),
        "rate": round(rate, 4),
        "by_pattern": dict(Counter(flagged.values()).most_common()),
        "reported": [
            {"source": fps[i].source, "pattern": p, "value": shown(fps[i].value)} for i, p in sorted(flagged.items())
        ],
        "true_positives": len(tps),
        "true_positives_in_casm_formats": len(matched),
        "true_positives_dismissed": [
            {"source": tps[i].source, "why": why, "value": shown(tps[i].value)} for i, why in sorted(lost.items())
        ],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{len(fps)} curated false positives from {len(files)} rule files ({built} built in code, left out)")
        print(f"reported as secrets: {len(flagged)} ({rate:.1%}; bar {args.max_rate:.0%})")
        for item in report["reported"]:
            print(f"  {item['pattern']:28} {item['source']:28} {item['value']!r}")
        print(f"true positives: {len(tps)}; in CASM's formats: {len(matched)}; dismissed there: {len(lost)}")
        for item in report["true_positives_dismissed"]:
            print(f"  {item['source']:28} {item['value']!r}: {item['why']}")
    sys.exit(1 if rate > args.max_rate else 0)


if __name__ == "__main__":
    main()
