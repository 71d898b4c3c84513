"""Build (or resume) a teacher-output cache for distillation: ``python tools/build_teacher_cache.py
-c configs/blind/teacher_cache.yaml -o runs/teacher_cache [key=value ...]``.

See :mod:`optisr.blind.teacher_cache`. Resumable: run it again with the same config and folder.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> int:
    from optisr.blind.teacher_cache import TeacherCacheConfig, build_teacher_cache
    from optisr.config import build_config
    from optisr.errors import OptiSRError

    args = list(sys.argv[1:] if argv is None else argv)
    if "-c" not in args or "-o" not in args:
        print("usage: build_teacher_cache.py -c CONFIG.yaml -o CACHE_DIR [key=value ...]", file=sys.stderr)
        return 2
    cfg_path = args[args.index("-c") + 1]
    out = args[args.index("-o") + 1]
    overrides = [a for a in args if "=" in a]
    try:
        cfg = build_config(TeacherCacheConfig, cfg_path, overrides)
        manifest = build_teacher_cache(cfg, out)
    except OptiSRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = {k: manifest[k] for k in ("patches", "teacher_seconds", "complete")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
