"""Peak bytes of the tensors a piece of code allocates, on any device (a TorchDispatchMode).

Every operator's outputs that do not alias one of its inputs are new storages: their bytes are
added when created and subtracted when the last Python tensor using the storage is freed, and
the peak of that sum is recorded. Tensors that existed before (weights, inputs, caches) and
views of them are not counted. This is the activation memory of the code, independent of any
allocator (the CUDA caching allocator rounds and keeps blocks on top of it).
"""
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveTensorPeak(TorchDispatchMode):
    """``with LiveTensorPeak() as tracker: ...`` then ``tracker.peak`` (bytes)."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages = {}  # data_ptr -> [bytes, live tensors using it]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        inputs = {value.untyped_storage().data_ptr()
                  for value in tree_leaves((args, kwargs)) if isinstance(value, torch.Tensor)}
        for value in tree_leaves(output):
            if isinstance(value, torch.Tensor):
                self._track(value, inputs)
        return output

    def _track(self, tensor, inputs):
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        entry = self._storages.get(pointer)
        if entry is None:
            if pointer in inputs or storage.nbytes() == 0:
                return  # a view or an in-place result of a tensor made before: not new memory
            entry = [storage.nbytes(), 0]
            self._storages[pointer] = entry
            self.live += entry[0]
            self.peak = max(self.peak, self.live)
        entry[1] += 1
        weakref.finalize(tensor, self._release, pointer, entry)

    def _release(self, pointer, entry):
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            if self._storages.get(pointer) is entry:
                del self._storages[pointer]
