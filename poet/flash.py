"""A folder of files standing in for the device's flash, for the executor's page-outs.

File format ``poet-flash/1``: each node's tensors are written as the raw bytes of their
storages, one after the other (``<folder>/node<i>.bin``), with a JSON sidecar
(``node<i>.json``)::

    {"format": "poet-flash/1", "node": i, "storages": [nbytes, ...],
     "tensors": [{"name": fx value name, "dtype": "float32", "shape": [...], "stride": [...],
                  "storage_offset": k, "storage": index into "storages"}, ...]}

Nothing is pickled, and a read restores the exact layout (tensors that shared a storage share
one again). Files are written to a temporary name and renamed into place. The folder is a
private sub-folder (``poet-flash-*``) of ``flash_dir`` or of the system temporary folder,
removed by ``close()``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import ReplayError

__all__ = ["FlashFolder", "FLASH_FORMAT", "WeightsFile", "frozen_weights"]

FLASH_FORMAT = "poet-flash/1"


class FlashFolder:
    """A private folder that stands in for the device's flash.

    ``FlashFolder(None)`` makes a temporary folder; ``FlashFolder(path)`` makes a sub-folder
    ``poet-flash-*`` inside ``path``, which must exist, be a folder and be writable (else
    FileNotFoundError / NotADirectoryError / PermissionError saying so). ``close()`` (or
    leaving the ``with`` block) removes the sub-folder and everything in it.

    ``write(node_id, tensors)`` stores a node's tensors and returns the bytes of the data file;
    ``read(node_id)`` returns ``(tensors, bytes read)``; ``drop(node_id)`` deletes the files.
    Tensors that share a storage are written once and share a storage again when read back.
    """

    def __init__(self, flash_dir: str | os.PathLike | None = None):
        parent = None if flash_dir is None else _check_flash_dir(flash_dir)
        try:
            self.path = Path(tempfile.mkdtemp(prefix="poet-flash-", dir=parent))
        except OSError as e:
            where = parent if parent is not None else tempfile.gettempdir()
            raise PermissionError(f"flash_dir {where}: cannot create a folder in it "
                                  f"({e.strerror or e}); give a writable folder") from None
        self._sizes: dict[int, int] = {}
        self._total = 0
        self.meta_bytes = 0

    # ---- context manager
    def __enter__(self) -> FlashFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Remove the folder and every file in it (idempotent)."""
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        self._sizes.clear()
        self._total = 0

    # ---- queries
    @property
    def bytes_on_flash(self) -> int:
        """Sum of the data-file sizes currently stored."""
        return self._total

    def __contains__(self, node_id: int) -> bool:
        return node_id in self._sizes

    def _files(self, node_id: int) -> tuple[Path, Path]:
        return self.path / f"node{node_id}.bin", self.path / f"node{node_id}.json"

    # ---- I/O
    def write(self, node_id: int, tensors: Mapping[str, torch.Tensor]) -> int:
        """Write ``tensors`` (fx value name -> tensor) for ``node_id``; returns data-file bytes."""
        data_path, meta_path = self._files(node_id)
        storages: list[tuple[int, torch.Tensor]] = []  # (data_ptr, uint8 view of the storage)
        index_of: dict[int, int] = {}
        entries = []
        for name, t in tensors.items():
            st = t.untyped_storage()
            key = st.data_ptr()
            if key not in index_of or st.nbytes() == 0:
                index_of[key] = len(storages)
                storages.append((key, torch.empty(0, dtype=torch.uint8, device=t.device).set_(st)))
            entries.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."),
                            "shape": list(t.shape), "stride": list(t.stride()),
                            "storage_offset": t.storage_offset(), "storage": index_of[key]})
        meta = {"format": FLASH_FORMAT, "node": node_id,
                "storages": [int(u8.numel()) for _, u8 in storages], "tensors": entries}
        _write_atomic(data_path, lambda f: [f.write(u8.cpu().numpy().data) for _, u8 in storages])
        meta_text = json.dumps(meta, separators=(",", ":")).encode()
        _write_atomic(meta_path, lambda f: f.write(meta_text))
        size = os.stat(data_path).st_size
        self._total += size - self._sizes.get(node_id, 0)
        self._sizes[node_id] = size
        self.meta_bytes += len(meta_text)
        return size

    def read(self, node_id: int) -> tuple[dict[str, torch.Tensor], int]:
        """The tensors stored for ``node_id`` (exact dtype, shape, strides) and the bytes read."""
        data_path, meta_path = self._files(node_id)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            sizes = [int(s) for s in meta["storages"]]
            entries = meta["tensors"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ReplayError(f"flash file {meta_path} is missing or corrupt ({e}); "
                              f"cannot page in node {node_id}") from None
        actual = os.stat(data_path).st_size if data_path.exists() else -1
        if actual != sum(sizes):
            raise ReplayError(f"flash file {data_path} has {actual} bytes, its sidecar says "
                              f"{sum(sizes)}; cannot page in node {node_id}")
        buffers = [torch.empty(n, dtype=torch.uint8) for n in sizes]
        with open(data_path, "rb") as f:
            for buf in buffers:
                if buf.numel() and f.readinto(buf.numpy().data) != buf.numel():
                    raise ReplayError(f"flash file {data_path} ended early; cannot page in node {node_id}")
        out: dict[str, torch.Tensor] = {}
        for e in entries:
            try:
                dtype = getattr(torch, str(e["dtype"]), None)
                if not isinstance(dtype, torch.dtype):
                    raise ValueError(f"unknown dtype {e['dtype']!r}")
                t = torch.empty(0, dtype=dtype)
                t.set_(buffers[int(e["storage"])].untyped_storage(), int(e["storage_offset"]),
                       [int(d) for d in e["shape"]], [int(d) for d in e["stride"]])
                out[str(e["name"])] = t
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
                raise ReplayError(f"flash file {meta_path}: bad tensor entry {e!r} ({err}); cannot "
                                  f"page in node {node_id}") from None
        return out, actual

    def drop(self, node_id: int) -> None:
        """Delete the files of ``node_id``."""
        for p in self._files(node_id):
            p.unlink(missing_ok=True)
        self._total -= self._sizes.pop(node_id, 0)


def _check_flash_dir(flash_dir: str | os.PathLike) -> Path:
    p = Path(flash_dir)
    try:
        st = os.stat(p)
    except NotADirectoryError:
        blocker = next((a for a in reversed(p.parents) if a.exists() and not a.is_dir()), None)
        raise NotADirectoryError(f"flash_dir {p} cannot exist: {blocker or 'a parent'} is a file, "
                                 f"not a folder") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"flash_dir {p} does not exist; create the folder first "
                                f"(or leave flash_dir out to use a temporary folder)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"flash_dir {p} is a file, not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise PermissionError(f"flash_dir {p} is not writable by this user; give a writable folder")
    return p


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class WeightsFile:
    """The program flash that holds the frozen weights: one file, read through a memory map.

    ``WeightsFile(tensors, flash_dir)`` writes each tensor's elements (in logical order, each
    start aligned to 64 bytes) to ``weights.bin`` in a private folder ``poet-weights-*`` of
    ``flash_dir`` (or of the system temporary folder) and maps the file with
    ``torch.from_file(..., shared=True)``; ``tensors`` (same keys) are then contiguous tensors of
    the same dtype and shape whose bytes live in the mapped file, not in the process's heap.
    ``nbytes`` is the file's size; ``matches(tensors)`` says whether the mapped copy still
    holds those values' storages and versions (a frozen weight changed in place since is
    written again by the caller). ``close()`` (also when the object is collected) removes the
    folder.
    """

    _ALIGN = 64

    def __init__(self, tensors: Mapping[str, torch.Tensor], flash_dir: str | os.PathLike | None = None):
        parent = None if flash_dir is None else _check_flash_dir(flash_dir)
        self.path = Path(tempfile.mkdtemp(prefix="poet-weights-", dir=parent))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.path), True)
        self._keys = {name: (t.untyped_storage().data_ptr(), t._version) for name, t in tensors.items()}
        layout: list[tuple[str, int, torch.Tensor]] = []
        offset = 0
        for name, t in tensors.items():
            c = t.detach().contiguous().cpu()
            layout.append((name, offset, c))
            offset += -(-c.numel() * c.element_size() // self._ALIGN) * self._ALIGN
        self.nbytes = max(offset, 1)
        data = self.path / "weights.bin"
        with open(data, "wb") as f:
            for name, off, c in layout:
                f.seek(off)
                if c.numel():
                    f.write(c.reshape(-1).view(torch.uint8).numpy().data)
            f.truncate(self.nbytes)
        flat = torch.from_file(str(data), shared=True, size=self.nbytes, dtype=torch.uint8)
        self.tensors: dict[str, torch.Tensor] = {}
        for name, off, c in layout:
            n = c.numel() * c.element_size()
            self.tensors[name] = flat[off:off + n].view(c.dtype).view(c.shape)

    def matches(self, tensors: Mapping[str, torch.Tensor]) -> bool:
        """True if ``tensors`` are the ones written (same storages, not changed in place since)."""
        return {name: (t.untyped_storage().data_ptr(), t._version) for name, t in tensors.items()} == self._keys

    def close(self) -> None:
        """Drop the mapping and remove the folder (idempotent)."""
        self.tensors = {}
        self._cleanup()


def frozen_weights(current: WeightsFile | None, graph: Any, params: Mapping[str, torch.Tensor],
                   flash_dir: str | os.PathLike | None) -> tuple[WeightsFile | None, dict[str, torch.Tensor]]:
    """The weights file of ``graph``'s frozen parameters (``params``: qualname -> parameter) and
    its memory-mapped tensors by fx name: ``current`` itself while it still holds their bytes,
    else a new file (``current`` is closed). No frozen parameter: ``current`` and ``{}``."""
    frozen = {ph.fx_name: params[ph.qualname].detach() for ph in graph.placeholders
              if ph.role == "param" and not ph.trainable}
    if not frozen:
        return current, {}
    if current is None or not current.matches(frozen):
        if current is not None:
            current.close()
        current = WeightsFile(frozen, flash_dir)
    return current, current.tensors
