"""The policy benchmark runs end to end on a small corpus (its numbers are not asserted:
timings belong in benchmark reports, not in unit tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("policy_scan", ROOT / "benchmarks" / "policy_scan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_reports_both_scanners_on_the_same_corpus() -> None:
    result = _module().run(size_mb=0.3, repeat=1)
    assert result["corpus_mb"] >= 0.3
    assert result["planted_secrets"] >= 1
    # Every planted token is found, and nothing else is (lockfile integrity hashes are noise).
    assert result["casm"]["secrets_found"] == result["planted_secrets"]
    assert result["detect_secrets"]["secrets_found"] >= result["planted_secrets"]
    assert result["secretlint"]["secrets_found"] == result["planted_secrets"]  # npm's secretlint, same files
    for name in ("casm", "detect_secrets", "secretlint"):
        assert result[name]["seconds"] > 0 and result[name]["mb_per_s"] > 0
    assert result["throughput_ratio_casm_over_detect_secrets"] > 0
    assert result["throughput_ratio_casm_over_secretlint"] > 0
