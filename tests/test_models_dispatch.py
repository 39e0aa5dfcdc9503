"""`ciinv.models.load_flow` / `load_generator` pick the loader from the spec or the file."""

from __future__ import annotations

from ciinv.models import is_weightless_flow, load_flow
from ciinv.models.flow_dis import DISFlow
from ciinv.models.flownet2 import FlowNet2, write_tiny_flownet2


def test_flow_specs_pick_their_estimator(tmp_path):
    assert isinstance(load_flow("dis"), DISFlow) and isinstance(load_flow("dis:fast"), DISFlow)
    assert is_weightless_flow("dis:ultrafast") and not is_weightless_flow(tmp_path / "FlowNet2_checkpoint.pth.tar")
    write_tiny_flownet2(tmp_path / "FlowNet2_checkpoint.pth.tar")
    assert isinstance(load_flow(tmp_path / "FlowNet2_checkpoint.pth.tar"), FlowNet2)
