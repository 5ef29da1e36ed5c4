"""Bytes of real tensors, counted by unique storage (the executor's memory accounting).

A storage is keyed by its data pointer and counted as ``untyped_storage().nbytes()``, once
however many tensors view it, with no allocator model (no fragmentation, caching or
alignment). Empty storages count 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["LiveStorages", "tensors_of", "storage_bytes", "digest"]


def tensors_of(value: Any) -> list[torch.Tensor]:
    """The tensors in ``value`` (a tensor, or nested tuples/lists; anything else holds none)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors_of(v)]
    return []


class LiveStorages:
    """Reference-counted set of storages (keyed by data pointer) with their byte total.

    ``add(value, step)`` counts the storages of ``value``'s tensors and returns their keys,
    which ``remove`` takes back (so a value's storages are looked up once); ``born[key]`` is
    the ``step`` at which a storage was first counted. Storages in ``excluded`` and empty
    ones are not counted. ``total`` is the bytes counted now.
    """

    def __init__(self, excluded: set[int]):
        self.excluded = excluded
        self.count: dict[int, int] = {}
        self.size: dict[int, int] = {}
        self.born: dict[int, int] = {}
        self.total = 0

    def add(self, value: Any, step: int = -1) -> list[int]:
        keys = []
        for t in tensors_of(value):
            st = t.untyped_storage()
            key = st.data_ptr()
            if key in self.excluded:
                continue
            nbytes = st.nbytes()
            if nbytes == 0:
                continue
            c = self.count.get(key, 0)
            if c == 0:
                self.size[key] = nbytes
                self.total += nbytes
                self.born[key] = step
            self.count[key] = c + 1
            keys.append(key)
        return keys

    def remove(self, keys: list[int]) -> None:
        for key in keys:
            c = self.count[key] - 1
            if c == 0:
                del self.count[key]
                self.total -= self.size.pop(key)
            else:
                self.count[key] = c


def storage_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages among ``tensors``."""
    seen: dict[int, int] = {}
    for t in tensors_of(list(tensors)):
        st = t.untyped_storage()
        seen[st.data_ptr() if st.nbytes() else id(t)] = st.nbytes()
    return sum(seen.values())


def digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and element bytes (in logical order)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()

