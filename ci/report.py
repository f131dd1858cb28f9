"""Pass/fail lines for the CI check scripts (ci/chart_checks.py, ci/chart_drift.py)."""

from __future__ import annotations


class Report:
    """Collects pass/fail lines: prints each check as it runs and counts the outcomes."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {name}" + (f"  ({detail})" if detail else ""))
        else:
            self.failed.append(name)
            print(f"  FAIL  {name}" + (f"\n        {detail}" if detail else ""))
        return ok
