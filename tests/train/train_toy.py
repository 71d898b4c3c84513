"""A tiny deterministic training task for the optisr.train tests (module and script).

An MLP (float64, with dropout) fits ``y = sin(3 x0) + x1**2`` on ``[-1, 1]^2``. Batches come from
``step_generator(seed, step, rank)``. Run as a script (plain or under torchrun)::

    python train_toy.py --config toy.yaml --save-dir DIR [--resume] [KEY=VALUE ...]

At the end every rank writes ``DIR/final_rank{rank}.pt`` = {"model": state dict, "ema": ...}.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from optisr.cli.options import device_from_args
from optisr.cli.train import add_common_train_args, collect_overrides
from optisr.io.state_dict import save_model_safetensors
from optisr.train import (
    FitResult,
    TrainConfig,
    build_config,
    cleanup,
    fit,
    init_distributed,
    step_generator,
    to_dict,
)


@dataclass
class ToyConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(total_steps=20))
    hidden: int = 16
    dropout: float = 0.1
    sleep: float = 0.0  # seconds per batch, to give a test time to kill the run
    emulate_ranks: int = 1  # single process drawing the batches of ranks 0..n-1 (DDP reference)
    tensorboard: bool = True  # False: metrics.jsonl only (saves the tensorboard import)


class ToyTask:
    def __init__(self, cfg: ToyConfig) -> None:
        self.cfg = cfg

    def build_model(self) -> nn.Module:
        c = self.cfg
        return nn.Sequential(
            nn.Linear(2, c.hidden), nn.Tanh(), nn.Dropout(c.dropout), nn.Linear(c.hidden, 1)
        ).double()

    def _draw(self, step: int, rank: int, n: int) -> dict[str, torch.Tensor]:
        g = step_generator(self.cfg.train.seed, step, rank)
        x = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
        y = torch.sin(3 * x[:, :1]) + x[:, 1:] ** 2
        return {"x": x, "y": y}

    def batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        if self.cfg.sleep:
            time.sleep(self.cfg.sleep)
        bs = self.cfg.train.batch_size
        parts = [self._draw(step, r, bs) for r in range(rank, rank + self.cfg.emulate_ranks)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def loss(self, model, batch):
        loss = torch.mean((model(batch["x"]) - batch["y"]) ** 2)
        return loss, {"mse": float(loss.detach())}

    def validate(self, model, step):
        b = self._draw(10**6, 0, 64)
        mse = float(torch.mean((model(b["x"]) - b["y"]) ** 2))
        return {"mse": mse, "step_seen": float(step)}

    def save_release(self, model, path, metrics):
        save_model_safetensors(model, path, step=str(int(metrics["step"])))


CONFIG_CLASS = ToyConfig  # engine interface of ``optisr train`` (the tests register this module)


def train(
    cfg: ToyConfig,
    *,
    save_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    progress: bool = True,
    device: str | torch.device | None = "cpu",
) -> FitResult:
    info = init_distributed(device=device)
    try:
        result = fit(
            ToyTask(cfg),
            cfg.train,
            save_dir=save_dir,
            resume=resume,
            progress=progress,
            dist_info=info,
            extra_state={"config": to_dict(cfg)},
            tensorboard=None if cfg.tensorboard else False,
        )
        final = {"model": result.model.state_dict(), "ema": result.ema.module.state_dict() if result.ema else None}
        torch.save(final, Path(save_dir) / f"final_rank{info.rank}.pt")
    finally:
        cleanup(info)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    add_common_train_args(parser)
    args = parser.parse_args(["--device", "cpu", *(sys.argv[1:] if argv is None else argv)])
    cfg = build_config(ToyConfig, args.config, collect_overrides(args))
    train(cfg, save_dir=args.save_dir, resume=args.resume, progress=not args.no_progress, device=device_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
