"""Under CI (``CI=true``) a ``realdata`` test must fail, not skip, when what it needs is missing (the data
directory, the bundled model): a green CI run that silently skipped the real-data tests would claim what it never
ran. Outside CI they skip as before. Runs pytest on a small test file with this suite's conftest as a plugin."""

from __future__ import annotations

import pytest

import conftest

SUBJECT = """
import pytest

@pytest.mark.realdata
def test_asks_for_the_data(data_dir):
    pass

@pytest.mark.realdata
def test_skips_by_itself():
    pytest.skip("the bundled model is not installed")

def test_other_skip():
    pytest.skip("not a realdata test")
"""


@pytest.mark.parametrize(("ci", "outcome"), [
    (None, {"skipped": 3}),
    ("true", {"errors": 1, "failed": 1, "skipped": 1}),
])  # fmt: skip
def test_missing_data_skips_locally_and_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: dict[str, int]
) -> None:
    monkeypatch.delenv("CI", raising=False)
    if ci is not None:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("ADAPTER_FUSION_DATA_DIR", str(pytester.path / "no-such-data"))
    pytester.makepyfile(test_subject=SUBJECT)
    # "-p conftest": this suite's conftest module (already imported) supplies data_dir and the report hook
    result = pytester.runpytest_inprocess("-p", conftest.__name__, "-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(**outcome)
    if ci is not None:
        result.stdout.fnmatch_lines([
            "*test_asks_for_the_data*realdata test under CI=true: data directory*no-such-data not found*",
            "*test_skips_by_itself*skipped under CI=true, which must run it*bundled model is not installed*",
        ])  # fmt: skip
