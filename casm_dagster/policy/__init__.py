"""The policy engine: scores a diff against a ruleset and decides pass/warn/gate/block.

Plain Python (no Dagster): ``ruleset`` loads and validates rules, ``diff`` parses unified
diffs, ``secrets``/``heuristics``/``deps`` find signals, ``engine`` scores them and
``document`` renders ``policy_decisions.json``. See docs/policy.md.
"""
