"""Build (or resume) the RRDBNet trunk-feature cache of a teacher cache, for a tail-only fine-tune:
``python tools/build_feature_cache.py -t runs/teacher_cache -o runs/feature_cache_k2 [key=value ...]``.

Keys (:class:`optisr.blind.feature_cache.FeatureCacheConfig`): ``model`` (default realsr-df2k-x4),
``tail_blocks`` (K, default 2), ``shard_size``, ``time_limit_s``, ``threads``. Resumable: run it again
with the same arguments (also after the teacher cache grew). See :mod:`optisr.blind.feature_cache`.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> int:
    from optisr.blind.feature_cache import FeatureCacheConfig, build_feature_cache
    from optisr.config import build_config
    from optisr.errors import OptiSRError

    args = list(sys.argv[1:] if argv is None else argv)
    if "-t" not in args or "-o" not in args or args[-1] in ("-t", "-o"):
        print("usage: build_feature_cache.py -t TEACHER_CACHE -o FEATURE_CACHE [key=value ...]", file=sys.stderr)
        return 2
    teacher = args[args.index("-t") + 1]
    out = args[args.index("-o") + 1]
    overrides = [a for a in args if "=" in a]
    try:
        cfg = build_config(FeatureCacheConfig, None, overrides)
        manifest = build_feature_cache(cfg, teacher, out)
    except OptiSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = {k: manifest[k] for k in ("tail_blocks", "patches", "head_seconds", "complete", "head_sha256")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
