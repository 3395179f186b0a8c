"""The CPU allocator setting of ``enf`` processes (``enf.cli.allocator``): it removes the page faults of freeing and
reallocating large tensors, and ``ENF_ALLOCATOR`` selects it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from enf.cli import main
from enf.cli.allocator import tune_allocator

# Allocates, touches and frees a 64 MiB tensor 20 times; prints the minor page faults of the loop and the setting.
PROBE = """
import json, resource, torch
from enf.cli.allocator import allocator_setting, tune_allocator
tuned = tune_allocator()
torch.empty(16 << 20).fill_(1.0)  # warm-up: the first allocation faults in either case
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.empty(16 << 20).fill_(1.0)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tuned, "faults": faults, "setting": allocator_setting()}))
"""


def probe(choice: str) -> dict:
    env = os.environ | {"ENF_ALLOCATOR": choice}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_tuned_allocator_removes_the_page_faults_of_large_tensors():
    system, tuned = probe("system"), probe("tuned")
    assert system == {"tuned": False, "faults": system["faults"], "setting": "system"}
    # 20 x 64 MiB through fresh memory maps: about 20 x 16,384 pages faulted in (the control)
    assert system["faults"] > 20 * 8_000, system
    if not tuned["tuned"]:
        pytest.skip("this C library has no mallopt (not glibc): nothing is tuned")
    assert tuned["setting"].startswith("tuned")
    if tuned["setting"] == "tuned (mmap threshold 1024 MiB)":
        assert tuned["faults"] < system["faults"] / 10, (system, tuned)  # measured: 16,384 vs 327,700


def test_allocator_choice_is_validated(monkeypatch, capsys):
    monkeypatch.setenv("ENF_ALLOCATOR", "jemalloc")
    with pytest.raises(ValueError, match=r"ENF_ALLOCATOR must be 'tuned' or 'system', got 'jemalloc'"):
        tune_allocator()
    with pytest.raises(SystemExit, match="ENF_ALLOCATOR"):
        main(["data", "list"])
    monkeypatch.setenv("ENF_ALLOCATOR", "system")
    assert tune_allocator() is False
