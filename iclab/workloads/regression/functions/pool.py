"""A finite training pool: train on `pool_size` distinct functions and/or `prompt_pool_size` distinct
prompts (Garg et al. 2022: ~1k weight vectors or ~100k prompts suffice for linear regression).

The pool is sampled once, on the CPU from `pool_seed` (so that it is the same set of functions on every
device, and the memorization baseline at evaluation sees exactly what training saw), then moved to the
device and indexed per step with indices drawn from the step's generator: batched, device-side, no host
reads.

- Functions: `sample_params(P, n_dims)` at the full n_dims (the curriculum truncates x only, as in Garg
  et al.), P = pool_size, or prompt_pool_size when only prompts are pooled.
- Prompts: prompt j is a fixed sequence of x's (and of standard-normal label noises) together with the
  function j (or j mod pool_size when both are set). The x's are generated in blocks of points, block b from
  (pool_seed, b), so a longer prompt (the points curriculum) extends the same sequences.
"""

from __future__ import annotations

import numpy as np
import torch

from iclab.workloads.regression.functions.params import index_params, params_to

BLOCK = 16  # points per block of pooled prompts


def cpu_generator(*key: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


class TrainingPool:
    def __init__(self, task):
        self.task = task
        o = task.opts
        self.n_functions = o.pool_size or o.prompt_pool_size
        self.n_prompts = o.prompt_pool_size
        self.seed = o.pool_seed
        self._functions = None
        self._on_device: dict[str, object] = {}
        self._xs: dict[str, torch.Tensor] = {}
        self._noise: dict[str, torch.Tensor] = {}

    def functions(self, device) -> object:
        """Parameters of all pool functions, batch first, on `device`."""
        if self._functions is None:
            self._functions = self.task.sample_params(
                self.n_functions, self.task.n_dims, cpu_generator(self.seed, 0), "cpu"
            )
        key = str(torch.device(device))
        if key not in self._on_device:
            self._on_device[key] = params_to(self._functions, device)
        return self._on_device[key]

    def prompt_xs(self, n_points: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """x's (N, >= n_points, n_dims) and unit label noises (N, >= n_points) of the pooled prompts."""
        key = str(torch.device(device))
        have = self._xs[key].shape[1] if key in self._xs else 0
        if have < n_points:
            xs, noise = [], []
            for b in range(have // BLOCK, -(-n_points // BLOCK)):
                g = cpu_generator(self.seed, 1, b)
                xs.append(self.task.sample_xs(self.n_prompts, BLOCK, self.task.n_dims, g, "cpu"))
                noise.append(torch.randn(self.n_prompts, BLOCK, generator=g))
            new_xs, new_noise = torch.cat(xs, 1).to(device), torch.cat(noise, 1).to(device)
            self._xs[key] = torch.cat([self._xs[key], new_xs], 1) if have else new_xs
            self._noise[key] = torch.cat([self._noise[key], new_noise], 1) if have else new_noise
        return self._xs[key], self._noise[key]

    def sample(self, batch: int, n_points: int, n_dims_truncated: int, gen: torch.Generator, device):
        task = self.task
        if self.n_prompts is None:
            xs = task.sample_xs(batch, n_points, n_dims_truncated, gen, device)
            idx = torch.randint(self.n_functions, (batch,), generator=gen, device=device)
            params = index_params(self.functions(device), idx)
            return xs, task.add_noise(task.evaluate(params, xs), gen)
        pool_xs, pool_noise = self.prompt_xs(n_points, device)
        idx = torch.randint(self.n_prompts, (batch,), generator=gen, device=device)
        xs = pool_xs[idx, :n_points]
        if n_dims_truncated < task.n_dims:
            xs[..., n_dims_truncated:] = 0
        params = index_params(self.functions(device), idx % self.n_functions)
        ys = task.evaluate(params, xs)
        if task.label_noise_std:
            ys = ys + task.label_noise_std * pool_noise[idx, :n_points]
        return xs, ys
