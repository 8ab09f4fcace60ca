"""The lean training loop shared by ``train`` and ``collect``.

Data lives on the device, augmentation is batched there, no per-sample Python.
Checkpoints (atomic, weights-only) carry everything needed to resume to the
same numbers: model, optimizers, schedule, regularizer, every RNG, step.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import Split, augment
from ..distributed import Dist, all_reduce_, barrier, check_in_sync, shard
from ..errors import NonFiniteError
from ..io_util import atomic_torch_save, atomic_write_jsonl
from ..layers import unwrap


@dataclass
class LoopConfig:
    epochs: int = 300
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 5e-4
    optimizer: str = "adam"          # adam | sgd
    warmup: float = 0.05             # fraction of steps with linear warm-up
    amp: bool = False
    eval_every: int = 50             # epochs
    eval_size: int = 2000            # test images used by periodic evaluations
    ckpt_every: int = 0              # epochs; 0 = at every evaluation
    seed: int = 0
    label_smoothing: float = 0.0
    schedule: str = "cosine"         # cosine | linear (to 0 over all steps, times the warm-up ramp) | constant
    augment: bool = True             # random crop + horizontal flip of every batch


def _rng_state(gen: torch.Generator) -> dict:
    st = {"torch": torch.get_rng_state(), "data": gen.get_state(),
          "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
          "numpy_pos": int(np.random.get_state()[2]),
          "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(st["torch"])
    gen.set_state(st["data"])
    np.random.set_state(("MT19937", st["numpy"].numpy().astype(np.uint32), st["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(st["python"]), None))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


class Trainer:
    """Trains ``model`` on ``train`` (optionally with a regularizer), evaluates on ``test``.

    Under torchrun (``dist.active``) ``model`` is wrapped in DDP: every rank augments the same
    global batch and trains on its shard, and only rank 0 writes files."""

    def __init__(self, model: torch.nn.Module, train: Split, test: Split, cfg: LoopConfig,
                 device: torch.device, run_dir: Path, reg=None, desc: str = "train",
                 run_config: dict | None = None, dist: Dist = Dist()) -> None:
        self.model, self.train, self.test, self.cfg, self.dist = model, train, test, cfg, dist
        self.run_config = run_config   # the caller's settings, saved with each checkpoint
        self.device, self.run_dir, self.reg, self.desc = device, Path(run_dir), reg, desc
        n = len(train)
        self.steps_per_epoch = math.ceil(n / cfg.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        params = list(model.parameters())
        if cfg.optimizer == "adam":
            self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True,
                                       weight_decay=cfg.weight_decay)
        warm = max(1, int(cfg.warmup * self.total_steps))
        total = self.total_steps

        def lr_at(step: int) -> float:
            frac = min(step, total) / total
            decay = (0.5 * (1 + math.cos(math.pi * frac)) if cfg.schedule == "cosine" else
                     1.0 - frac if cfg.schedule == "linear" else 1.0)
            return min(1.0, (step + 1) / warm) * decay

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_at)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        g = torch.Generator().manual_seed(12345)   # fixed subset for periodic evaluations
        self.eval_idx = torch.randperm(len(test), generator=g)[: cfg.eval_size].to(device)
        self.epoch, self.step, self.metrics = 0, 0, []
        self.elapsed, self._t_seg = 0.0, time.time()   # training wall time, across resumes
        self.cpu_elapsed, self._c_seg = 0.0, time.process_time()   # and this process's CPU time
        self._acc = torch.zeros(4, device=device)  # ce sum, correct, seen, non-finite flag

    # ---- checkpoint -----------------------------------------------------------------
    def state(self) -> dict:
        return {"model": unwrap(self.model).state_dict(), "opt": self.opt.state_dict(), "world": self.dist.world,
                "sched": self.sched.state_dict(), "epoch": self.epoch, "step": self.step,
                "metrics": self.metrics, "rng": _rng_state(self.gen), "acc": self._acc.cpu(),
                "reg": self.reg.checkpoint_state() if self.reg is not None else None,
                "config": asdict(self.cfg), "run_config": self.run_config, "elapsed": self.wall_time(),
                "cpu_elapsed": self.cpu_time()}

    def wall_time(self) -> float:
        """Seconds spent training this run, summed over every resumed segment."""
        return self.elapsed + time.time() - self._t_seg

    def cpu_time(self) -> float:
        """CPU seconds of this process (all its threads), summed over resumed segments: unlike the
        wall time it does not count time the run was paused or waiting for a shared core."""
        return self.cpu_elapsed + time.process_time() - self._c_seg

    def load_state(self, st: dict) -> None:
        if int(st.get("world", 1)) != self.dist.world:
            raise ValueError(f"the checkpoint was written by {st.get('world', 1)} rank(s), this run has "
                             f"{self.dist.world}: resume with the same torchrun --nproc_per_node")
        unwrap(self.model).load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        self.epoch, self.step, self.metrics = int(st["epoch"]), int(st["step"]), list(st["metrics"])
        _set_rng_state(st["rng"], self.gen)
        self._acc = st["acc"].to(self.device)
        self.elapsed, self._t_seg = float(st.get("elapsed", 0.0)), time.time()
        # a checkpoint from before CPU time was kept: the total is unknown (NaN), not undercounted
        self.cpu_elapsed, self._c_seg = float(st.get("cpu_elapsed", math.nan)), time.process_time()
        if self.reg is not None:
            if st.get("reg") is None:
                raise ValueError("checkpoint has no regularizer state")
            self.reg.load_checkpoint_state(st["reg"])

    def save_checkpoint(self) -> None:
        for p in self.model.parameters():
            if not torch.isfinite(p).all():
                raise NonFiniteError(f"non-finite weights at step {self.step}; last good checkpoint kept")
        if self.dist.active:     # every rank must hold the same classifier and discriminators
            d = list(self.reg_params()) if self.reg is not None else []
            check_in_sync(list(self.model.parameters()) + d, self.dist, "classifier or D parameters")
        if self.dist.is_main:
            atomic_torch_save(self.run_dir / "checkpoint.pt", self.state())
            atomic_write_jsonl(self.run_dir / "metrics.jsonl", self.metrics)
        barrier(self.dist)

    def reg_params(self):
        """The regularizer's trained parameters (its discriminators), if it has any."""
        return list(self.reg.trained_parameters()) if self.reg is not None else []

    # ---- evaluation -------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, idx: torch.Tensor | None = None, batch: int = 1000) -> dict:
        model = unwrap(self.model)            # no DDP collectives: ranks split the batches
        model.eval()
        t, y = self.test, self.test.y
        n = len(t) if idx is None else idx.numel()
        samples = int(getattr(model, "prediction_samples", 1))   # a Bayesian net: softmax averaged over passes
        loss = correct = 0.0
        for i, s in enumerate(range(0, n, batch)):
            if i % self.dist.world != self.dist.rank:
                continue
            b = slice(s, s + batch)
            xb, yb = (t.rows(b), y[b]) if idx is None else (t.rows(idx[b]), y[idx[b]])
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp):
                if samples == 1:
                    out = model(xb).float()
                else:                # log of the mean predictive probability: cross-entropy and argmax of it
                    out = torch.stack([F.softmax(model(xb).float(), 1) for _ in range(samples)]).mean(0)
                    out = out.clamp_min(1e-12).log()
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
            correct += float((out.argmax(1) == yb).sum())
        if self.dist.active:
            sums = torch.tensor([loss, correct], dtype=torch.float64, device=self.device)
            all_reduce_([sums], self.dist)
            loss, correct = float(sums[0]), float(sums[1])
        model.train()
        return {"test_loss": loss / n, "test_acc": correct / n, "test_n": n}

    # ---- training -------------------------------------------------------------------------
    def _check_finite(self) -> None:
        if float(self._acc[3]) > 0:
            raise NonFiniteError(f"non-finite loss or gradient near step {self.step}; stopped, "
                                 f"the last good checkpoint is kept")

    def _train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp):
            out = self.model(xb)
        ce = F.cross_entropy(out.float(), yb, label_smoothing=self.cfg.label_smoothing)
        loss = ce + self.reg.generator_loss() if self.reg is not None else ce
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))
        bad = ~(torch.isfinite(loss) & torch.isfinite(gnorm))
        self._acc += torch.stack([ce.detach() * yb.numel(), (out.argmax(1) == yb).sum().float(),
                                  torch.tensor(float(yb.numel()), device=self.device), bad.float()])
        if self.device.type == "cpu" and not self.dist.active and bool(bad):
            self._check_finite()          # cheap on CPU: stop before a bad update
        self.opt.step()
        self.sched.step()
        if self.reg is not None:
            self.reg.discriminator_step()
        self.step += 1

    def _log_eval(self, final: bool = False) -> dict:
        all_reduce_([self._acc], self.dist)   # every rank's ce, correct, seen, non-finite flag
        self._check_finite()
        acc = self._acc.cpu()
        row = {"step": self.step, "epoch": self.epoch,
               "train_ce": float(acc[0] / max(acc[2], 1)), "train_acc": float(acc[1] / max(acc[2], 1)),
               "lr": self.sched.get_last_lr()[0]}
        self._acc.zero_()
        if self.reg is not None:
            row.update(self.reg.pop_stats())
        row.update(self.evaluate(None if final else self.eval_idx))
        row["time"] = time.time()
        self.metrics.append(row)
        return row

    def run(self, on_eval: Callable[[dict], None] | None = None) -> dict:
        """Train to the end (from wherever a loaded checkpoint left off); returns the final row."""
        cfg = self.cfg
        n = len(self.train)
        per_step = self.steps_per_epoch > 20     # long epochs: count steps, not epochs
        bar = tqdm(total=self.total_steps if per_step else cfg.epochs,
                   initial=self.step if per_step else self.epoch, desc=self.desc,
                   unit="step" if per_step else "ep", leave=False, dynamic_ncols=True, mininterval=2.0,
                   **({} if self.dist.is_main else {"disable": True}))   # rank 0 shows it
        last = self.metrics[-1] if self.metrics else {}
        if self.metrics and self.dist.is_main:   # resumed: a kill between save_checkpoint's two writes left the log short
            atomic_write_jsonl(self.run_dir / "metrics.jsonl", self.metrics)
        while self.epoch < cfg.epochs:
            perm = torch.randperm(n, generator=self.gen, device=self.device)
            for s in range(0, n, cfg.batch_size):
                idx = perm[s: s + cfg.batch_size]    # the global batch; this rank trains on its shard
                x = self.train.rows(idx)
                self._train_step(shard(augment(x, self.gen) if cfg.augment else x, self.dist),
                                 shard(self.train.y[idx], self.dist))
                if per_step:
                    bar.update(1)
            self.epoch += 1
            if not per_step:
                bar.update(1)
            is_last = self.epoch == cfg.epochs
            if self.epoch % cfg.eval_every == 0 or is_last:
                last = self._log_eval(final=is_last)
                bar.set_postfix({k: f"{last[k]:.3f}" for k in ("train_ce", "test_acc", "g_loss")
                                 if k in last})
                if on_eval:
                    on_eval(last)
            if is_last or (cfg.ckpt_every and self.epoch % cfg.ckpt_every == 0) or \
                    (not cfg.ckpt_every and self.epoch % cfg.eval_every == 0):
                self.save_checkpoint()
        bar.close()
        return last
