"""Config checks beyond the schema: no NaN or infinite number anywhere, edit names unique."""

from __future__ import annotations

import pytest

from ciinv.config import check_config, nonfinite_numbers
from ciinv.errors import CiinvError


def test_every_non_finite_number_is_named_by_its_key():
    config = {"invert": {"lr": float("nan"), "betas": [0.9, float("inf")], "steps": 5},
              "edits": [{"name": "a", "strength": -float("inf")}], "assemble": {"feather": 0.1}}
    assert nonfinite_numbers(config) == ["invert/lr", "invert/betas/1", "edits/0/strength"]
    with pytest.raises(CiinvError, match="invert/lr, invert/betas/1, edits/0/strength: are not a finite number"):
        check_config(config)


def test_two_edits_of_one_name_are_refused():
    check_config({"edits": [{"name": "a"}, {"name": "b"}]})
    with pytest.raises(CiinvError, match="'a' appear more than once"):
        check_config({"edits": [{"name": "a"}, {"name": "b"}, {"name": "a"}]})
