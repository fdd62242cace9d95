"""DistributedDataParallel on CPU (gloo): 2 processes x batch B/2 follow the same loss curve
as 1 process x batch B, and only rank 0 writes outputs.

The model has no BatchNorm (`TinyNet(bn=False)`): with BN each rank normalises its own half
batch, which legitimately changes the curve (use SyncBatchNorm for identical statistics).
Augmentation is off because ranks draw different random numbers by design (seed + rank).
The 2-process run is launched the way users launch it, with torchrun (`python -m
torch.distributed.run`), running this file's `child`.
"""
import os
import subprocess
import sys

import pytest
import torch

from mdistiller.engine.checkpoint import load_checkpoint
from helpers.outputs import read_scalars, worklog_blocks
from helpers.tiny import subprocess_env, tiny_cfg, tiny_loaders, tiny_trainer

EPOCHS = 3
TEST_N = 33  # test images: unequal shares for the two ranks


def ddp_cfg(prefix, name):
    return tiny_cfg(prefix, "EXPERIMENT.NAME", name, "SOLVER.EPOCHS", EPOCHS, "SOLVER.LR", 0.2)


def test_two_gloo_processes_match_one_process(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.abspath(__file__), str(tmp_path)]
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("epoch 1/3 |") == 1  # summaries from rank 0 only

    cfg = ddp_cfg(tmp_path, "single")
    tiny_trainer(cfg, bn=False, loaders=tiny_loaders(cfg, augment=False, distributed_sampler=True,
                                                     test_n=TEST_N)).fit()

    folders = {name: os.path.join(tmp_path, "p", name) for name in ("single", "ddp")}
    curves = {name: [v for _, v in read_scalars(os.path.join(f, "train.events"))["train_loss"]]
              for name, f in folders.items()}
    assert len(curves["ddp"]) == EPOCHS
    assert curves["ddp"] == pytest.approx(curves["single"], rel=1e-5)
    assert curves["single"][-1] < curves["single"][0]  # it does train
    single, ddp = (load_checkpoint(os.path.join(f, "latest")) for f in folders.values())
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=1e-5)
    assert ddp["world_size"] == 2 and len(ddp["rng"]) == 2  # every rank's RNG state, for resume
    blocks, _ = worklog_blocks(os.path.join(folders["ddp"], "worklog.txt"))
    assert [b[0] for b in blocks] == [1, 2, 3]
    # each rank evaluated its share (17 and 16 images); the summed metrics are the whole set's
    single_blocks, _ = worklog_blocks(os.path.join(folders["single"], "worklog.txt"))
    for (_, _, mine), (_, _, theirs) in zip(blocks, single_blocks):
        for key in ("test_acc", "test_acc_top5", "test_loss"):
            assert float(mine[key]) == pytest.approx(float(theirs[key]), abs=0.011), key


def child(prefix):
    """One torchrun worker: join the gloo group and train the tiny run "ddp"."""
    from mdistiller.engine.distributed import barrier, destroy_process_group, env_dist_info, init_process_group

    torch.set_num_threads(1)
    info = env_dist_info()
    init_process_group(info, torch.device("cpu"))
    try:
        cfg = ddp_cfg(prefix, "ddp")
        tiny_trainer(cfg, info=info, bn=False, loaders=tiny_loaders(cfg, info=info, augment=False, test_n=TEST_N)).fit()
        barrier(info)  # as engine.build.train: no rank tears the group down while another still works
    finally:
        destroy_process_group()


if __name__ == "__main__":
    child(sys.argv[1])
