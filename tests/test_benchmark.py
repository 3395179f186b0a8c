"""Tests of ``enf.benchmark.run_benchmark``'s recipe options and of ``enf bench``'s KEY=VALUE flags."""

from __future__ import annotations

import pytest
import torch

from enf import EquivariantNeuralField
from enf.benchmark import run_benchmark
from enf.cli.main import main
from enf.fitting import MetaSGD

TINY = dict(batch_size=1, num_latents=8, k_nearest=4, repeats=1, num_threads=1, hidden_dim=32, context_dim=8)


def test_options_reach_the_model_and_a_narrow_head_counts_fewer_flops():
    precision = torch.get_float32_matmul_precision()
    wide = run_benchmark(**TINY)
    narrow = run_benchmark(
        **TINY,
        decoder_options={"head_hidden_dim": 8},
        fitter_options={"per_step_lr": True},
        matmul_precision="high",
    )
    assert torch.get_float32_matmul_precision() == precision  # restored
    decoder = EquivariantNeuralField(
        geometry="translation2d", num_out=3, context_dim=8, hidden_dim=32, k_nearest=4, head_hidden_dim=8
    )
    meta = MetaSGD(geometry="translation2d", num_latents=8, context_dim=8, per_step_lr=True)
    expected = sum(p.numel() for p in [*decoder.parameters(), *meta.parameters()])
    assert narrow["num_parameters"] == expected != wide["num_parameters"]
    assert narrow["outer_step_matmul_gflop"] < wide["outer_step_matmul_gflop"]
    assert narrow["decoder_options"] == {"head_hidden_dim": 8} and narrow["matmul_precision"] == "high"


@pytest.mark.parametrize(
    "flag,message",
    [
        (["--decoder", "head_hidden_dim"], "expects KEY=VALUE"),
        (["--fitter", "no such=1"], "expects KEY=VALUE"),
    ],
)
def test_bench_refuses_malformed_options(flag, message, capsys):
    with pytest.raises(SystemExit):
        main(["bench", *flag])
    assert message in capsys.readouterr().err


def test_bench_names_an_unknown_option(capsys):
    with pytest.raises(SystemExit, match="enf bench: .*no_such_option"):
        main(
            [
                "bench",
                "--decoder",
                "no_such_option=1",
                "--repeats",
                "1",
                "--num-latents",
                "8",
                "--k-nearest",
                "4",
            ]
        )
