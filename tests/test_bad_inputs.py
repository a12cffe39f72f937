"""Inputs that used to slip through (wrong types, empty runs, impossible settings) now get clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toyattn.circuits import matching as circuits
from toyattn.circuits.copy_task import TrainConfig, TrainingRun, zipf_probs
from toyattn.heads.fused_qkv import split_qkv
from toyattn.hooks import HookPoint
from toyattn.sentences.corpus import ToyCorpus
from toyattn.symmetry.scores import kv_head_for_query


def test_decode_refuses_floats_and_accepts_numpy_integers():
    corpus = ToyCorpus()
    with pytest.raises(TypeError, match="Token ids must be integers, got 0.0"):
        corpus.decode([0.0, 1.7])
    with pytest.raises(TypeError, match="Token ids must be integers"):
        corpus.decode(torch.tensor([0.0, 1.0]))
    assert corpus.decode([np.int64(1), 2]) == corpus.decode(torch.tensor([1, 2]))


def test_labels_refuses_a_bool():
    with pytest.raises(TypeError, match="got True"):
        ToyCorpus().labels(True)


def test_kv_head_for_query_takes_numpy_integers():
    assert kv_head_for_query(np.int64(4), 2).tolist() == [0, 0, 1, 1]


def test_split_qkv_refuses_a_bool_head_count():
    with pytest.raises(TypeError, match="n_heads must be an integer, got True"):
        split_qkv(torch.zeros(4, 12), True, layout="in_out")


def test_qk_ov_matching_refuses_non_square_factors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"must both be \[d_model, d_model\]"):
        circuits.qk_ov_matching(rng.standard_normal((8, 6)), rng.standard_normal((8, 6)), 2)
    with pytest.raises(ValueError, match=r"must both be \[d_model, d_model\]"):
        circuits.qk_ov_matching(rng.standard_normal((8, 8)), rng.standard_normal((6, 6)), 2)


@pytest.mark.parametrize("n_runs", [0, 1, 2.5, True])
def test_random_baseline_needs_two_runs(n_runs):
    with pytest.raises(ValueError, match="n_runs must be an integer >= 2"):
        circuits.random_baseline(8, 2, n_runs=n_runs)


@pytest.mark.parametrize("shift", [-1.0, 0.0, math.nan, math.inf])
def test_zipf_probs_refuses_shifts_that_give_nan(shift):
    with pytest.raises(ValueError, match="shift must be a positive number"):
        zipf_probs(24, shift)
    assert torch.isfinite(zipf_probs(24, 0.5)).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"lr": -1}, "lr"), ({"lr": math.nan}, "lr"), ({"lr": 0}, "lr"), ({"cpu_threads": 0}, "cpu_threads"),
     ({"weight_decay": -0.1}, "weight_decay"), ({"steps": True}, "steps")],
)
def test_train_config_refuses_impossible_settings(kwargs, match):
    with pytest.raises(ValueError, match=f"TrainConfig.{match}"):
        TrainConfig(**kwargs)


def test_training_run_load_out_of_range_says_what_exists():
    run = TrainingRun(model=None, model_config=None, task=None, train=TrainConfig(), pool_size=None, pool=None,
                      steps=[0, 25, 50], checkpoints=[{}, {}, {}])
    with pytest.raises(IndexError, match=r"checkpoint 99 does not exist: this run kept 3 checkpoints"):
        run.load(99)
    with pytest.raises(IndexError, match="checkpoint -4"):
        run.state_dict(-4)


def test_hook_returning_an_integer_tensor_is_caught_at_the_hook():
    point = HookPoint()
    point.name = "blocks.0.hook_pattern"
    point.add_hook(lambda act, hook: torch.zeros(act.shape, dtype=torch.long))
    with pytest.raises(TypeError, match=r"returned a torch.int64 tensor where the activation is torch.float32"):
        point(torch.ones(2, 3))


def test_train_copy_model_names_a_wrong_task_or_settings_object():
    from toyattn.circuits.copy_task import train_copy_model

    with pytest.raises(TypeError, match="task must be a CopyTaskConfig, got dict"):
        train_copy_model({"vocab_size": 8})
    with pytest.raises(TypeError, match="train must be a TrainConfig, got dict"):
        train_copy_model(train={"steps": 10})
