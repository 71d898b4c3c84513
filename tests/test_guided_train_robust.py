"""``optisr train guided`` with the robustness augmentations: dim guides, depth-sensor LR noise, dim validation."""

import json
from pathlib import Path

from optisr.cli.main import main
from optisr.config import build_config
from optisr.train.guided import GuidedTrainConfig

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "guided" / "tiny.yaml"


def test_robust_data_config_turns_the_augmentations_on():
    cfg = build_config(GuidedTrainConfig, REPO / "configs" / "guided" / "robust_data.yaml")
    default = build_config(GuidedTrainConfig, REPO / "configs" / "guided" / "default.yaml")
    d = cfg.datasets.train
    assert 0 < d.guide_degrade.prob < 1 and 0 < d.lr_noise.prob < 1
    assert set(d.lr_noise.kinds) == {"misalign", "flying", "depth", "gaussian", "quantise", "holes"}
    assert cfg.datasets.val.guide_conditions == ["clean", "dim"]
    assert default.datasets.train.guide_degrade.prob == 0 and default.datasets.train.lr_noise.prob == 0
    assert d.sources == default.datasets.train.sources and d.scales == default.datasets.train.scales


def test_tiny_run_with_every_augmentation_and_dim_validation(tmp_path):
    every = "{misalign: 1.0, flying: 1.0, depth: 1.0, gaussian: 1.0, quantise: 1.0, holes: 1.0}"
    rc = main(
        [
            "train",
            "guided",
            "-c",
            str(TINY),
            "--save-dir",
            str(tmp_path),
            "--no-progress",
            "--device",
            "cpu",
            "datasets.train.guide_degrade.prob=1.0",
            "datasets.train.lr_noise.prob=1.0",
            f"datasets.train.lr_noise.kinds={every}",
            "datasets.val.guide_conditions=[clean, dim]",
        ]
    )
    assert rc == 0
    rows = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses and all(v == v for v in losses)  # finite (NaN != NaN) despite NaN holes in the source
    val = [r for r in rows if "val/nrmse_dim" in r]
    assert val and "val/color_nrmse_dim" in val[0] and "val/nrmse_x4_dim" in val[0]
