"""``archsim physics``: the data-movement report (store vs recompute, bytes per memory level,
replication, energy before and after) into reports/physics/."""
from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("physics", help="write the physics report (memory levels, store vs "
                       "recompute, replication, energy by component) into reports/physics/",
                       description=__doc__)
    p.add_argument("--repo", default=".", help="repository root with workloads/ (default: .)")
    p.add_argument("--out", default="reports/physics", help="output folder (default: reports/physics)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from archsim.errors import SpecError
    from archsim.fsutil import check_out_dir
    from archsim.physics import physics_report, write_report

    repo = Path(args.repo)
    if not (repo / "workloads").is_dir():
        raise SpecError("command line", "--repo", args.repo, "a folder with workloads/ (the repository root)")
    out = Path(args.out)
    check_out_dir(out)
    data = physics_report(repo, out)
    for path in write_report(data, out, f"archsim physics --out {args.out}"):
        print(path)
    return 0
