"""Network interpolation of two SRVGGNetCompact ×4 generators (ESRGAN's perception–distortion knob).

``θ(α) = α·θ_gan + (1 − α)·θ_psnr`` parameter by parameter (Wang et al., ESRGAN, §3.4: interpolating
a PSNR-oriented and a GAN-fine-tuned network trades artefacts for sharpness more smoothly than
training with another loss weight). Each interpolated generator is scored with the training
validation of a blind config (``BlindTask.validate``: PSNR-Y / SSIM-Y / MATLAB NIQE of the held-out
BSDS200 val images, NIQE of the PolyU photos), and ``--write`` saves one of them.

    PYTHONPATH=. python tools/interpolate_compact.py --psnr runs/distilled-x4.safetensors \
        --gan runs/otsr_compact_otsr_r2/rel_01200.safetensors runs/otsr_compact_ragan_r3/last.safetensors \
        --alphas 0.5 0.6 0.7 0.8 0.9 -c configs/blind/otsr_compact_otsr_r2.yaml

Selection rule for otsr-compact-x4, written down before any interpolated model was scored
(2026-12-02, 07:30 UTC), in the spirit of the earlier rounds' rules:
  1. candidates: α ∈ {0.5, 0.6, 0.7, 0.8, 0.9} for each GAN end point (round 2 run A step 1200,
     round 3 last step), the PSNR end point the distilled release;
  2. eligible: val PSNR-Y ≥ DF2K's + 0.5 dB (22.92) and SSIM-Y ≥ DF2K's + 0.02 (0.5195);
  3. chosen: the lowest val/niqe (4 natural BSDS200 val photos) among the eligible;
  4. it replaces the shipped v3 only if its val/niqe ≤ 4.57 (v3's 4.87 minus that criterion's
     ±0.3 noise); BSD100 and RealSRSet+5 are then measured once and reported whatever they show.
Outcome (07:23 UTC): best eligible round 2 end at α = 0.8, val NIQE 4.65 > 4.57: nothing replaced.

Second rule, written down at 07:26 UTC before the run it needs started: round 2 run A is continued
from its step-1200 state to step 2400 (``optisr train blind -c configs/blind/otsr_compact_otsr_r2.yaml
--resume runs/otsr_compact_otsr_r2/state_00001200.pt train.total_steps=2400
path.save_dir=runs/otsr_compact_otsr_r2_long``), a further GAN end point. Candidates: α ∈ {0.5, 0.6,
0.7, 0.8, 0.9} with that run's last EMA generator; eligible, chosen and replacement exactly as in
steps 2–4 above (the first rule's 10 candidates are not reconsidered).
Outcome (07:40 UTC): the continued run ended at val NIQE 4.98 / SSIM 0.4879; its blends scored
5.23 / 5.00 / 4.94 (α 0.5 / 0.6 / 0.7, eligible) and 4.92 / 4.96 (α 0.8 / 0.9, below the PSNR or
SSIM bar): nothing replaced.
"""

from __future__ import annotations

import argparse
import os

import torch

from optisr.blind.checkpoints import load_model_file
from optisr.config import build_config
from optisr.train.blind import BlindTrainConfig, build_task


def interpolate(psnr: dict[str, torch.Tensor], gan: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """``α·gan + (1 − α)·psnr`` for every floating tensor (both state dicts must have the same keys)."""
    if psnr.keys() != gan.keys():
        raise SystemExit("the two generators have different parameters: not the same architecture")
    return {k: (alpha * gan[k].float() + (1 - alpha) * psnr[k].float()) for k in psnr}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--psnr", required=True, help="the PSNR-oriented end point (.safetensors)")
    ap.add_argument("--gan", nargs="+", required=True, help="GAN-fine-tuned end point(s)")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9])
    ap.add_argument("-c", "--config", required=True, help="a blind training config whose val section scores them")
    ap.add_argument("--write", nargs=3, metavar=("GAN", "ALPHA", "OUT"), help="save this interpolation")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = load_model_file(args.psnr)
    psnr_sd = {k: v.detach().clone() for k, v in base.model.state_dict().items()}
    if args.write:
        gan_path, alpha, out = args.write[0], float(args.write[1]), args.write[2]
        from safetensors.torch import save_file

        sd = interpolate(psnr_sd, load_model_file(gan_path).model.state_dict(), alpha)
        meta = dict(base.metadata)
        meta.update(
            interpolation=f"{alpha:g}*{os.path.basename(gan_path)} + {1 - alpha:g}*{os.path.basename(args.psnr)}"
        )
        save_file({k: v.contiguous() for k, v in sd.items()}, out, metadata=meta)
        print(f"wrote {out}")
        return
    task = build_task(build_config(BlindTrainConfig, args.config))
    model = base.model
    print("| GAN end point | α | val PSNR-Y | val SSIM-Y | val NIQE | photos NIQE |")
    print("|---|---:|---:|---:|---:|---:|")
    for gan_path in args.gan:
        gan_sd = load_model_file(gan_path).model.state_dict()
        for alpha in args.alphas:
            model.load_state_dict(interpolate(psnr_sd, gan_sd, alpha))
            with torch.no_grad():
                m = task.validate(model, 0)
            print(
                f"| {os.path.basename(os.path.dirname(gan_path))}/{os.path.basename(gan_path)} | {alpha:g} | "
                f"{m['psnr_y']:.3f} | {m['ssim_y']:.4f} | {m['niqe']:.3f} | {m.get('niqe_photos', float('nan')):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
