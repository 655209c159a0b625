"""heavyball's optimizer state, made to fit iclab's safetensors checkpoints and come back bit for bit.

heavyball's `state_dict` carries (1) a pickled preconditioner-schedule function, (2) Python sets
(`is_initialized`), (3) a group's `step_count` that is the same tensor as a parameter state's `step`
(safetensors refuses shared memory), and PSGD keeps float64 running bounds that torch's
`load_state_dict` casts to the parameters' float32. `checkpointable(opt)` adds hooks: on save, those bytes
is dropped (the schedule is rebuilt from the options, and the load hook discards it too, so nothing is
ever unpickled), sets become sorted lists under a marker key and the shared tensor is copied; on load,
the sets come back and the saved dtypes are restored after torch's cast.
"""

from __future__ import annotations

import torch

_SET = "__iclab_set__"


def checkpointable(opt):
    def save(opt_, sd):
        sd.get("heavyball", {}).pop("precond_schedule", None)  # a pickle; rebuilt from the options
        sd["state"] = _sets_to_lists(sd["state"])
        seen: set[int] = set()  # a group's step_count is the same tensor as a state's step: one copy each
        for g in sd["param_groups"]:
            for v in g.values():
                if isinstance(v, torch.Tensor):
                    seen.add(id(v))
        sd["state"] = _unalias(sd["state"], seen)

    def load(opt_, sd):
        sd = dict(sd)
        if "heavyball" in sd:
            sd["heavyball"] = {k: v for k, v in sd["heavyball"].items() if k != "precond_schedule"}  # never unpickle
        sd["state"] = _lists_to_sets(sd["state"])
        pending["state"] = sd["state"]
        return sd

    def restore_dtypes(opt_):
        # torch's load_state_dict casts every state tensor but "step" to its parameter's dtype; PSGD keeps
        # float64 running bounds beside float32 weights: put the saved dtypes back
        params = [p for g in opt_.param_groups for p in g["params"]]
        for idx, saved in pending.pop("state", {}).items():
            _copy_dtypes(opt_.state[params[idx]], saved)

    pending: dict = {}
    opt.register_state_dict_post_hook(save)
    opt.register_load_state_dict_pre_hook(load, prepend=True)
    opt.register_load_state_dict_post_hook(restore_dtypes)
    return opt


def _copy_dtypes(target, saved):
    items = target.items() if isinstance(target, dict) else enumerate(target) if isinstance(target, list) else ()
    for k, v in items:
        s = saved[k]
        if isinstance(v, torch.Tensor) and isinstance(s, torch.Tensor) and v.dtype != s.dtype:
            target[k] = s.to(device=v.device, copy=True)
        elif isinstance(v, (dict, list)):
            _copy_dtypes(v, s)


def _sets_to_lists(x):
    if isinstance(x, (set, frozenset)):
        return {_SET: sorted(x, key=repr)}
    if isinstance(x, dict):
        return {k: _sets_to_lists(v) for k, v in x.items()}
    return x


def _unalias(x, seen: set[int]):
    if isinstance(x, torch.Tensor):
        if id(x) in seen:
            return x.clone()
        seen.add(id(x))
        return x
    if isinstance(x, dict):
        return {k: _unalias(v, seen) for k, v in x.items()}
    return x


def _lists_to_sets(x):
    if isinstance(x, dict):
        if set(x) == {_SET}:
            return set(x[_SET])
        return {k: _lists_to_sets(v) for k, v in x.items()}
    return x
