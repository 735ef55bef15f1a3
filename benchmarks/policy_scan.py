"""Policy engine vs detect-secrets and secretlint: throughput on the same corpus, in one run.

The corpus is real code: the ``.py`` files of an installed package (dagster by default)
rendered as one git diff that adds them, plus lockfile lines (integrity hashes) and a few
planted tokens so every scanner has something to find. CASM and detect-secrets read the
same diff text; secretlint (npm, its recommended preset; installed once under
``--npm-cache``) scans the same files written out, as it does in a checkout — its time
includes Node's start-up. We report MB/s for each and the ratios (ours / theirs), the
median of ``--repeat`` runs, and our time at 1× and 2× the corpus (≈2.0 means linear).

    python benchmarks/policy_scan.py [--size-mb 8] [--repeat 3] [--no-secretlint] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from casm_dagster.policy.diff import parse_diff
from casm_dagster.policy.engine import PolicyEngine
from casm_dagster.policy.keyed_hash import KeyedHasher
from casm_dagster.policy.ruleset import load_ruleset
from casm_dagster.policy.sources import PatchOnly


def _token(rng: random.Random, prefix: str, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return prefix + "".join(rng.choice(alphabet) for _ in range(n))


def corpus(size_mb: float, checkout: Path, package: str = "dagster", seed: int = 0) -> tuple[str, int]:
    """A git diff adding real source files until ``size_mb``; returns (text, planted secrets).

    The added files are also written under ``checkout``: detect-secrets skips diff entries
    whose file does not exist on disk, as it would in a real checkout."""
    rng = random.Random(seed)
    root = Path(__import__(package).__file__).parent
    files = sorted(p for p in root.rglob("*.py") if p.is_file())
    budget = int(size_mb * 1024 * 1024)
    parts: list[str] = []
    planted = 0
    size = 0
    index = 0
    while size < budget:
        source = files[index % len(files)]
        index += 1
        lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
        if index % 25 == 0:  # a planted secret every 25 files
            lines.insert(len(lines) // 2, f'API_TOKEN = "{_token(rng, "ghp_", 36)}"')
            planted += 1
        if index % 10 == 0:  # lockfile-like noise that must not count as secrets
            lines += [f'"integrity": "sha512-{_token(rng, "", 86)}=="' for _ in range(20)]
        name = f"copy{index // len(files)}/{source.relative_to(root)}"
        header = f"diff --git a/{name} b/{name}\nnew file mode 100644\n--- /dev/null\n+++ b/{name}\n"
        body = f"@@ -0,0 +1,{len(lines)} @@\n" + "".join(f"+{line}\n" for line in lines) if lines else ""
        chunk = header + body
        target = checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        parts.append(chunk)
        size += len(chunk.encode())
    return "".join(parts), planted


def time_ours(engine: PolicyEngine, text: str) -> tuple[float, int]:
    start = time.perf_counter()
    result = engine.evaluate(parse_diff(text.encode()), PatchOnly())
    elapsed = time.perf_counter() - start
    return elapsed, sum(s.reason_code == "SECRET_LIKE" for s in result.signals)


def time_detect_secrets(text: str, checkout: Path) -> tuple[float, int]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    with default_settings(), contextlib.chdir(checkout):
        collection = SecretsCollection()
        start = time.perf_counter()
        collection.scan_diff(text)
        elapsed = time.perf_counter() - start
    return elapsed, sum(len(found) for _, found in collection.data.items())


SECRETLINT = ("secretlint@13", "@secretlint/secretlint-rule-preset-recommend@13")
NPM_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "casm-bench-secretlint"


def secretlint_binary(prefix: Path = NPM_CACHE) -> Path:
    """secretlint with its recommended preset, npm-installed under ``prefix`` once."""
    binary = prefix / "node_modules" / ".bin" / "secretlint"
    if not binary.exists():
        if shutil.which("npm") is None:
            raise RuntimeError("secretlint needs npm (or pass --no-secretlint)")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent", *SECRETLINT],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return binary


def time_secretlint(binary: Path, checkout: Path) -> tuple[float, int]:
    (checkout / ".secretlintrc.json").write_text('{"rules": [{"id": "@secretlint/secretlint-rule-preset-recommend"}]}')
    start = time.perf_counter()
    proc = subprocess.run(
        [str(binary), "--format", "json", "--secretlintrc", ".secretlintrc.json", "copy*/**/*"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: secrets found
        raise RuntimeError(f"secretlint failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed, sum(len(r.get("messages", [])) for r in json.loads(proc.stdout or "[]"))


def run(size_mb: float, repeat: int, secretlint: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="casm-bench-") as tmp:
        return _run(size_mb, repeat, Path(tmp), secretlint_binary() if secretlint else None)


def _run(size_mb: float, repeat: int, checkout: Path, secretlint: Path | None = None) -> dict:
    text, planted = corpus(size_mb, checkout)
    mb = len(text.encode()) / (1024 * 1024)
    engine = PolicyEngine(load_ruleset("default.devtools"), KeyedHasher(b"benchmark-key-0123456789abcdef"))
    ours = [time_ours(engine, text) for _ in range(repeat)]
    theirs = [time_detect_secrets(text, checkout) for _ in range(repeat)]
    double = [time_ours(engine, text + text)[0] for _ in range(repeat)]
    ours_s = statistics.median(t for t, _ in ours)
    theirs_s = statistics.median(t for t, _ in theirs)
    result = {
        "corpus_mb": round(mb, 2),
        "planted_secrets": planted,
        "casm": {"seconds": round(ours_s, 3), "mb_per_s": round(mb / ours_s, 2), "secrets_found": ours[0][1]},
        "detect_secrets": {
            "seconds": round(theirs_s, 3),
            "mb_per_s": round(mb / theirs_s, 2),
            "secrets_found": theirs[0][1],
        },
        "throughput_ratio_casm_over_detect_secrets": round(theirs_s / ours_s, 2),
        "casm_time_ratio_2x_over_1x": round(statistics.median(double) / ours_s, 2),
        "repeat": repeat,
    }
    if secretlint is not None:
        runs = [time_secretlint(secretlint, checkout) for _ in range(repeat)]
        seconds = statistics.median(t for t, _ in runs)
        result["secretlint"] = {
            "seconds": round(seconds, 3),
            "mb_per_s": round(mb / seconds, 2),
            "secrets_found": runs[0][1],
        }
        result["throughput_ratio_casm_over_secretlint"] = round(seconds / ours_s, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-secretlint", action="store_true", help="skip secretlint (it needs npm)")
    args = parser.parse_args(argv)
    result = run(args.size_mb, args.repeat, secretlint=not args.no_secretlint)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(f"corpus: {result['corpus_mb']} MB of diff, {result['planted_secrets']} planted GitHub tokens")
    for name in ("casm", "detect_secrets", "secretlint"):
        if name in result:
            r = result[name]
            print(
                f"  {name:<15} {r['seconds']:>8.3f} s  {r['mb_per_s']:>8.2f} MB/s  {r['secrets_found']} secrets found"
            )
    print(f"throughput ratio casm / detect-secrets: {result['throughput_ratio_casm_over_detect_secrets']}×")
    if "secretlint" in result:
        print(f"throughput ratio casm / secretlint: {result['throughput_ratio_casm_over_secretlint']}×")
    print(f"casm time at 2× corpus / 1× corpus: {result['casm_time_ratio_2x_over_1x']} (≈2.0 is linear)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
