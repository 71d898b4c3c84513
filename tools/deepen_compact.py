"""Deepen an SRVGGNetCompact generator without changing its function (Net2DeeperNet, Chen et al. 2016).

Inserts ``--add`` identity (conv, PReLU) pairs into the body: each new 3×3 conv is the identity
(centre tap 1 on the diagonal, bias 0) and each new PReLU has slope 1, so the deeper network computes
exactly what the input did (checked on a random input before writing) and training continues from
there with more capacity. The pairs are spread evenly after the hidden pairs; key names stay
BasicSR's (``body.N``), so the file loads anywhere the compact models load.

    PYTHONPATH=. python tools/deepen_compact.py runs/distilled-x4.safetensors runs/deep24.safetensors --add 8
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from optisr.blind.archs.compact import SRVGGNetCompact
from optisr.blind.checkpoints import load_model_file


def deepen(model: SRVGGNetCompact, add: int) -> SRVGGNetCompact:
    """A copy of ``model`` with ``add`` identity (conv, PReLU) pairs spread among its hidden pairs."""
    if model.act_type != "prelu":
        raise SystemExit("only PReLU compact models can be deepened exactly (a PReLU of slope 1 is the identity)")
    n = model.num_conv
    if not 0 < add <= n:
        raise SystemExit(f"--add must be from 1 to the hidden convs ({n}), got {add}")
    out = SRVGGNetCompact(
        model.num_in_ch, model.num_out_ch, num_feat=model.num_feat, num_conv=n + add, scale=model.scale, act_type="prelu"
    )
    old = list(model.body)
    after = {round((k + 1) * n / add) - 1 for k in range(add)}  # hidden pair indices followed by a new pair
    layers: list[nn.Module] = old[:2]
    for j in range(n):
        layers += old[2 + 2 * j : 4 + 2 * j]
        if j in after:
            conv = nn.Conv2d(model.num_feat, model.num_feat, 3, 1, 1)
            with torch.no_grad():
                conv.weight.zero_()
                conv.weight[:, :, 1, 1] = torch.eye(model.num_feat)
                conv.bias.zero_()
            act = nn.PReLU(model.num_feat)
            with torch.no_grad():
                act.weight.fill_(1.0)
            layers += [conv, act]
    layers.append(old[-1])
    assert len(layers) == len(out.body), (len(layers), len(out.body))
    out.body.load_state_dict(nn.Sequential(*layers).state_dict())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--add", type=int, default=8, help="identity (conv, PReLU) pairs to insert")
    args = ap.parse_args()
    loaded = load_model_file(args.src)
    if not isinstance(loaded.model, SRVGGNetCompact):
        raise SystemExit(f"{args.src}: not an SRVGGNetCompact generator")
    deeper = deepen(loaded.model, args.add).eval()
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        diff = float((deeper(x) - loaded.model(x)).abs().max())
    if diff > 1e-5:
        raise SystemExit(f"the deepened network differs from the source by {diff:.3g}: not written")
    from safetensors.torch import save_file

    meta = dict(loaded.metadata)
    meta.update(
        hyperparameters=json.dumps(deeper.hyperparameters()),
        deepened_from=f"{args.src} (num_conv {loaded.model.num_conv} + {args.add} identity pairs)",
    )
    save_file({k: v.contiguous() for k, v in deeper.state_dict().items()}, args.dst, metadata=meta)
    n_params = sum(p.numel() for p in deeper.parameters())
    print(f"wrote {args.dst}: num_conv {deeper.num_conv}, {n_params / 1e6:.2f} M parameters, max |Δ| {diff:.2g}")


if __name__ == "__main__":
    main()
