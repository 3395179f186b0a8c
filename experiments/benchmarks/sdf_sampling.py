"""Signed-distance sampling throughput (issue 10's target: a 100k-face mesh at 250k points in under 30 s on
2 cores). The mesh is a procedural union of primitives meshed by marching cubes at ``--resolution`` (101k
faces at 315), or a bundled mesh (``--mesh bunny``, 56k faces; needs pymeshlab).

    python experiments/benchmarks/sdf_sampling.py [--resolution 315] [--points 250000] [--mesh bunny]
"""

from __future__ import annotations

import argparse
import resource
import time

from enf.data.shapes.meshes import bundled_mesh, procedural_shapes
from enf.data.shapes.sdf import sample_sdf


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=315)
    parser.add_argument("--points", type=int, default=250_000)
    parser.add_argument("--mesh", default=None, help="a bundled mesh instead of the procedural one")
    args = parser.parse_args()
    t0 = time.perf_counter()
    mesh = (
        bundled_mesh(args.mesh) if args.mesh else procedural_shapes(1, seed=1, resolution=args.resolution)[0]
    )
    built = time.perf_counter() - t0
    num_near = int(0.8 * args.points)
    t0 = time.perf_counter()
    coords, sdf = sample_sdf(mesh, num_near=num_near, num_uniform=args.points - num_near, seed=0)
    took = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"mesh {mesh.name}: {len(mesh.faces):,} faces (built in {built:.1f} s)")
    print(f"{len(coords):,} signed distances in {took:.2f} s = {len(coords) / took:,.0f} points/s; "
          f"peak RSS {peak:.2f} GiB; inside fraction {(sdf < 0).mean():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
