"""Task instruction -> the T5 embedding the policy was trained with.

Cosmos Policy conditions on the T5-11B encoder output of the task instruction: 512 tokens of
1024 values, the states after the real tokens (the EOS token ``</s>`` counts as real) set to 0,
stored in bf16 (reference ``_src/predict2/inference/get_t5_emb.py``). Each released checkpoint
ships these precomputed as ``*_t5_embeddings.pkl``, a pickle of ``{instruction: bf16 tensor
(1, 512, 1024)}`` (``datasets/t5_embedding_utils.py``); the reference looks an instruction up
by exact string match (``cosmos_utils.py: get_t5_embedding_from_cache``).

A pickle can run arbitrary code when loaded, so it is converted once with a restricted
unpickler that only rebuilds tensors, numpy arrays and plain containers, and is stored as
safetensors: one tensor ``embeddings`` (N, 512, 1024) in the original dtype plus the N
instructions, in order, as JSON in the file metadata. ``TextEmbeddings.load`` memory-maps that
file and reads one row per instruction on demand.

Optionally, unknown instructions are encoded on the fly with a local T5 encoder
(``T5Encoder``, needs ``transformers`` and a model directory; never downloads).
"""
import argparse
import collections
import difflib
import io
import json
import os
from pathlib import Path
import pickle
import sys
import threading
import warnings

import numpy as np
from safetensors import safe_open
from safetensors.torch import save_file
import torch

T5_TOKENS = 512  # tokens per embedding (the reference pads and truncates to 512)
T5_WIDTH = 1024  # hidden size of the T5-11B encoder = the DiT's cross-attention input width
EMBEDDING_SHAPE = (T5_TOKENS, T5_WIDTH)
FILE_FORMAT = 'cosmos_policy_ros/t5-embeddings'
FILE_VERSION = '1'
TENSOR_NAME = 'embeddings'


class UnknownInstructionError(KeyError):
    """The instruction has no embedding (and no encoder is attached)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ''


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something a dict of tensors never needs; nothing was executed."""


# --- restricted unpickling of the released *.pkl -----------------------------------------------
def _storage_from_bytes(data):
    """Stand-in for ``torch.storage._load_from_bytes``: torch's own weights-only loader."""
    if not isinstance(data, bytes):
        raise UnsafePickleError(f'a tensor storage must be bytes, got {type(data).__name__}.')
    storage = torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafePickleError(f'a tensor storage decoded to {type(storage).__name__}.')
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False,
                    backward_hooks=None, metadata=None):
    """Stand-in for ``torch._utils._rebuild_tensor_v2`` that checks every argument."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafePickleError(f'tensor storage must be a torch storage, got '
                                f'{type(storage).__name__}.')
    integers = [storage_offset, *size, *stride] if isinstance(size, tuple) and isinstance(
        stride, tuple) else None
    if integers is None or not all(isinstance(n, int) and not isinstance(n, bool)
                                   for n in integers):
        raise UnsafePickleError('tensor offset, size and stride must be integers.')
    if backward_hooks or metadata:
        raise UnsafePickleError('tensors with backward hooks or metadata are not accepted.')
    if len(size) != len(stride) or min(integers) < 0:
        raise UnsafePickleError(f'invalid tensor geometry: size {size}, stride {stride}, '
                                f'offset {storage_offset}.')
    # set_ would silently grow a too-small storage: check that the view stays inside it.
    last = storage_offset + sum((n - 1) * step for n, step in zip(size, stride))
    if 0 not in size and last >= storage.size():
        raise UnsafePickleError(f'a tensor of size {size} reaches element {last} of a '
                                f'storage of {storage.size()} elements.')
    tensor = torch.empty(0, dtype=storage.dtype)
    return tensor.set_(storage.untyped(), storage_offset, size, stride)


def _latin1_encode(text, encoding='latin1'):
    """Stand-in for ``_codecs.encode``: how protocol-2 pickles spell bytes objects."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise UnsafePickleError(f'_codecs.encode is only accepted for latin1 text, got '
                                f'encoding {encoding!r}.')
    return text.encode('latin1')


_NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array rebuild function
_NUMPY_FLOAT_DTYPES = [type(np.dtype(kind)) for kind in (np.float16, np.float32, np.float64)]

# (module, name) in the pickle -> what is called instead. Nothing else is ever imported.
ALLOWED_GLOBALS = {
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch.storage', '_load_from_bytes'): _storage_from_bytes,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('numpy.core.multiarray', '_reconstruct'): _NUMPY_RECONSTRUCT,
    ('numpy._core.multiarray', '_reconstruct'): _NUMPY_RECONSTRUCT,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose only callables are ALLOWED_GLOBALS; anything else is refused unrun."""

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f'refused global {module}.{name}: a T5 embedding pickle only needs tensors, '
                f'numpy arrays and plain containers (allowed: '
                f'{", ".join(sorted(m + "." + n for m, n in ALLOWED_GLOBALS))}).') from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f'refused persistent id {pid!r} (not a plain pickle).')


def _torch_load_weights_only(path):
    """A file written with torch.save: torch's weights-only loader, numpy float arrays allowed."""
    allowed = [_NUMPY_RECONSTRUCT, (_NUMPY_RECONSTRUCT, 'numpy.core.multiarray._reconstruct'),
               np.ndarray, np.dtype, *_NUMPY_FLOAT_DTYPES]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location='cpu', weights_only=True)


def load_embedding_pickle(path):
    """Read a ``*_t5_embeddings.pkl`` safely: instruction -> float tensor (1, L, D) on the CPU.

    Accepts pickle.dump files (the released format) and torch.save files (zip or legacy);
    tensors or float numpy arrays, shaped (1, L, D) or (L, D). Raises UnsafePickleError, without
    executing anything, if the file asks for any other global.
    """
    path = Path(path)
    try:
        with open(path, 'rb') as stream, warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='TypedStorage is deprecated')
            if stream.read(4) == b'PK\x03\x04':  # torch.save zip archive
                data = _torch_load_weights_only(path)
            else:
                stream.seek(0)
                data = _RestrictedUnpickler(stream).load()
                if isinstance(data, int) and data == torch.serialization.MAGIC_NUMBER:
                    data = _torch_load_weights_only(path)  # legacy torch.save format
    except UnsafePickleError as error:
        raise UnsafePickleError(f'{path}: {error}') from None
    except pickle.UnpicklingError as error:
        if 'weights only' in str(error).lower():  # torch's loader refused a global
            raise UnsafePickleError(f'{path}: refused by torch.load(weights_only=True): '
                                    f'{error}') from None
        raise ValueError(f'{path} is not a readable T5 embedding pickle: {error}') from None
    except OSError as error:
        raise ValueError(f'cannot read T5 embeddings {path}: {error.strerror}') from None
    except (EOFError, ValueError, TypeError, RuntimeError) as error:
        raise ValueError(f'{path} is not a readable T5 embedding pickle: {error}') from None
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a dict {{instruction: embedding}}, got '
                         f'{type(data).__name__}.')
    return {_check_instruction(key, path): _as_embedding(key, value, path)
            for key, value in data.items()}


def _check_instruction(key, source):
    if not isinstance(key, str):
        raise ValueError(f'{source}: instructions must be strings, got key {key!r} '
                         f'({type(key).__name__}).')
    return key


def _as_embedding(instruction, value, source, expected_shape=None):
    """One stored embedding -> a fresh float CPU tensor (1, L, D)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind != 'f':
            raise ValueError(f'{source}: embedding of {instruction!r} has dtype {value.dtype}; '
                             f'expected floating point.')
        value = torch.from_numpy(np.array(value, copy=True))
    elif isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise ValueError(f'{source}: embedding of {instruction!r} has dtype {value.dtype}; '
                             f'expected floating point.')
        value = value.detach().cpu().clone()
        if type(value) is not torch.Tensor:
            value = value.as_subclass(torch.Tensor)  # e.g. a Parameter -> a plain tensor
    else:
        raise ValueError(f'{source}: embedding of {instruction!r} is a {type(value).__name__}; '
                         f'expected a tensor or numpy array.')
    if value.ndim == 2:
        value = value.unsqueeze(0)  # (L, D) -> (1, L, D)
    if value.ndim != 3 or value.shape[0] != 1:
        raise ValueError(f'{source}: embedding of {instruction!r} has shape '
                         f'{tuple(value.shape)}; expected (1, L, D) or (L, D).')
    if expected_shape is not None and tuple(value.shape[1:]) != tuple(expected_shape):
        raise ValueError(f'{source}: embedding of {instruction!r} has shape '
                         f'{tuple(value.shape)}; expected (1, {expected_shape[0]}, '
                         f'{expected_shape[1]}) (T5-11B: 512 tokens x 1024).')
    return value


# --- the lookup table --------------------------------------------------------------------------
class TextEmbeddings:
    """Instruction -> T5 embedding (1, 512, 1024), with a small cache of device copies.

    Build with `from_pickle` (a released ``*_t5_embeddings.pkl``), `from_dict` or `load`
    (a file written by `save`). `lookup` matches the instruction exactly, as the reference does.
    """

    def __init__(self, instructions, rows, *, source='<memory>', encoder=None, cache_size=4,
                 expected_shape=EMBEDDING_SHAPE):
        """Internal: use the constructors. rows: (N, L, D) tensor or a safetensors slice."""
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f'`cache_size` must be a positive integer. Got {cache_size!r}.')
        self._instructions = tuple(instructions)
        self._index = {text: row for row, text in enumerate(self._instructions)}
        if len(self._index) != len(self._instructions):
            counts = collections.Counter(self._instructions)
            raise ValueError(f'{source}: duplicate instructions '
                             f'{sorted(t for t, n in counts.items() if n > 1)}.')
        if not self._instructions:
            raise ValueError(f'{source}: no instructions.')
        self._rows = rows
        self._source = str(source)
        first = self._read_row(0)
        self._dtype = first.dtype
        self._shape = tuple(first.shape[1:])
        if expected_shape is not None and self._shape != tuple(expected_shape):
            raise ValueError(f'{source}: embeddings are (N, {self._shape[0]}, {self._shape[1]}); '
                             f'expected (N, {expected_shape[0]}, {expected_shape[1]}) '
                             f'(T5-11B: 512 tokens x 1024).')
        self.encoder = encoder
        self._encoded = {}  # instructions the encoder added, in order
        self._cache_size = cache_size
        self._cache = collections.OrderedDict()  # (instruction, device, dtype) -> tensor
        self._lock = threading.Lock()

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, embeddings, *, encoder=None, cache_size=4,
                  expected_shape=EMBEDDING_SHAPE, source='<memory>'):
        """From {instruction: tensor or array (1, L, D) or (L, D)}.

        All embeddings keep their dtype when they share one; mixed dtypes (the reference
        appends fp32 on-the-fly encodings to its bf16 pickle) are all stored as bf16, which is
        what the reference casts every embedding to before the network.
        """
        if not isinstance(embeddings, dict):
            raise ValueError(f'{source}: expected a dict {{instruction: embedding}}, got '
                             f'{type(embeddings).__name__}.')
        if not embeddings:
            raise ValueError(f'{source}: no instructions.')
        instructions = [_check_instruction(key, source) for key in embeddings]
        tensors = [_as_embedding(key, value, source, expected_shape)
                   for key, value in embeddings.items()]
        shapes = {tuple(tensor.shape) for tensor in tensors}
        if len(shapes) > 1:
            raise ValueError(f'{source}: embeddings have different shapes {sorted(shapes)}.')
        dtypes = {tensor.dtype for tensor in tensors}
        dtype = dtypes.pop() if len(dtypes) == 1 else torch.bfloat16
        rows = torch.cat([tensor.to(dtype) for tensor in tensors])  # N x (1, L, D) -> (N, L, D)
        return cls(instructions, rows, source=source, encoder=encoder, cache_size=cache_size,
                   expected_shape=expected_shape)

    @classmethod
    def from_pickle(cls, path, **kwargs):
        """Convert a released ``*_t5_embeddings.pkl`` safely (see `load_embedding_pickle`)."""
        return cls.from_dict(load_embedding_pickle(path), source=str(path), **kwargs)

    @classmethod
    def load(cls, path, *, encoder=None, cache_size=4, expected_shape=EMBEDDING_SHAPE):
        """Open a file written by `save`; rows are read from the memory-mapped file on demand."""
        try:
            handle = safe_open(str(path), framework='pt')
        except FileNotFoundError:
            raise ValueError(f'text embeddings file {path} does not exist.') from None
        except Exception as error:  # safetensors raises its own error types
            raise ValueError(f'cannot read text embeddings {path}: {error}') from None
        metadata = handle.metadata() or {}
        if metadata.get('format') != FILE_FORMAT:
            raise ValueError(
                f'{path} is not a cosmos_policy_ros text-embedding file (metadata format '
                f'{metadata.get("format")!r}). Convert a released *_t5_embeddings.pkl with '
                f'`python -m cosmos_policy_ros.engine.text convert IN.pkl OUT.safetensors`.')
        if metadata.get('version') != FILE_VERSION:
            raise ValueError(f'{path}: unsupported version {metadata.get("version")!r} '
                             f'(this code reads version {FILE_VERSION}).')
        try:
            instructions = json.loads(metadata['instructions'])
        except (KeyError, ValueError):
            raise ValueError(f'{path}: metadata has no valid `instructions` list.') from None
        if not isinstance(instructions, list) or not all(
                isinstance(text, str) for text in instructions):
            raise ValueError(f'{path}: `instructions` must be a list of strings.')
        if list(handle.keys()) != [TENSOR_NAME]:
            raise ValueError(f'{path}: expected exactly one tensor {TENSOR_NAME!r}, found '
                             f'{list(handle.keys())}.')
        rows = handle.get_slice(TENSOR_NAME)
        shape = tuple(rows.get_shape())
        if len(shape) != 3 or shape[0] != len(instructions):
            raise ValueError(f'{path}: tensor {TENSOR_NAME!r} has shape {shape}; expected '
                             f'({len(instructions)}, L, D) for {len(instructions)} instructions.')
        table = cls(instructions, rows, source=path, encoder=encoder, cache_size=cache_size,
                    expected_shape=expected_shape)
        table._handle = handle  # keeps the memory map open
        return table

    def save(self, path):
        """Write all embeddings (stored and encoded) as one safetensors file, atomically."""
        rows = self._read_all()
        instructions = list(self.instructions)
        metadata = {'format': FILE_FORMAT, 'version': FILE_VERSION,
                    'instructions': json.dumps(instructions, ensure_ascii=False)}
        path = Path(path)
        temporary = path.with_name(path.name + '.tmp')
        save_file({TENSOR_NAME: rows.contiguous()}, str(temporary), metadata=metadata)
        os.replace(temporary, path)

    # --- queries ---------------------------------------------------------------------------------
    @property
    def instructions(self):
        """All known instructions: the stored ones in file order, then the encoded ones."""
        return self._instructions + tuple(self._encoded)

    @property
    def dtype(self):
        return self._dtype

    @property
    def embedding_shape(self):
        """(L, D) of one embedding, (512, 1024) for T5-11B."""
        return self._shape

    def __len__(self):
        return len(self._instructions) + len(self._encoded)

    def __contains__(self, instruction):
        return instruction in self._index or instruction in self._encoded

    def __repr__(self):
        return (f'TextEmbeddings({len(self)} instructions, {self._shape}, {self._dtype}, '
                f'from {self._source})')

    def lookup(self, instruction, device=None, dtype=None):
        """The embedding of `instruction` (exact match): tensor (1, L, D).

        device, dtype: where and how the caller wants it (default: CPU, the stored dtype). The
        result is cached per (instruction, device, dtype), so a control loop that asks every
        tick gets the same tensor without a new transfer. The tensor is shared: do not modify it
        in place. Unknown instructions are encoded with `encoder` if one is attached, otherwise
        UnknownInstructionError (a KeyError) lists the nearest known instructions.
        """
        if not isinstance(instruction, str):
            raise TypeError(f'instruction must be a string, got {type(instruction).__name__}.')
        device = torch.device('cpu' if device is None else device)
        dtype = self._dtype if dtype is None else dtype
        key = (instruction, device, dtype)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            embedding = self._embedding(instruction).to(device=device, dtype=dtype)
            self._cache[key] = embedding
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return embedding

    def clear_cache(self):
        """Drop every cached device copy (e.g. after moving the model to another device)."""
        with self._lock:
            self._cache.clear()

    # --- internals -------------------------------------------------------------------------------
    def _read_row(self, row):
        # (1, L, D), a copy: slices of the table or of the file's memory map are shared memory.
        return self._rows[row:row + 1].clone()

    def _read_all(self):
        rows = self._rows[:] if not isinstance(self._rows, torch.Tensor) else self._rows
        encoded = [embedding.to(self._dtype) for embedding in self._encoded.values()]
        return torch.cat([rows, *encoded]) if encoded else rows  # (N + E, L, D)

    def _embedding(self, instruction):
        row = self._index.get(instruction)
        if row is not None:
            return self._read_row(row)
        if instruction in self._encoded:
            return self._encoded[instruction]
        if self.encoder is None:
            raise UnknownInstructionError(self._unknown_message(instruction))
        embedding = self.encoder.encode(instruction)
        if tuple(embedding.shape) != (1, *self._shape):
            raise ValueError(f'the T5 encoder returned shape {tuple(embedding.shape)} for '
                             f'{instruction!r}; the stored embeddings are (1, {self._shape[0]}, '
                             f'{self._shape[1]}).')
        self._encoded[instruction] = embedding.to(self._dtype)
        return self._encoded[instruction]

    def _unknown_message(self, instruction):
        known = self.instructions
        message = f'unknown instruction {instruction!r}: not among the {len(known)} ' \
                  f'instructions of {self._source}.'
        stripped = instruction.strip()
        if stripped != instruction and stripped in self:
            message += f' It differs from {stripped!r} only in surrounding whitespace.'
        else:
            folded = [text for text in known if text.casefold() == instruction.casefold()]
            if folded:
                message += f' It differs from {folded[0]!r} only in letter case.'
        nearest = difflib.get_close_matches(instruction, known, n=5, cutoff=0.0)
        message += ' Nearest known: ' + '; '.join(repr(text) for text in nearest) + '.'
        message += (' Instructions must match exactly (as in the reference); to encode new '
                    'ones, attach a local T5 encoder (T5Encoder.from_pretrained).')
        return message


# --- optional on-the-fly encoding --------------------------------------------------------------
class T5Encoder:
    """Encodes instructions exactly like the reference ``CosmosT5TextEncoder`` (local files only).

    Tokenize with truncation and padding to `max_length`, run the encoder with the attention
    mask, zero the hidden states after the real tokens (EOS included among the real ones: the
    states at positions >= attention_mask.sum() become 0), return bf16 (1, max_length, width).
    """

    def __init__(self, tokenizer, model, *, device='cpu', max_length=T5_TOKENS,
                 expected_width=T5_WIDTH):
        width = int(model.config.d_model)
        if expected_width is not None and width != expected_width:
            raise ValueError(f'the T5 encoder has width (d_model) {width}; Cosmos Policy needs '
                             f'{expected_width} (the google-t5/t5-11b encoder).')
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f'`max_length` must be an integer >= 2. Got {max_length!r}.')
        self.tokenizer = tokenizer
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.max_length = max_length
        self.expected_width = expected_width

    @classmethod
    def from_pretrained(cls, path, *, device='cpu', dtype=torch.float32, max_length=T5_TOKENS,
                        expected_width=T5_WIDTH):
        """Load tokenizer and encoder from a local directory (e.g. a copy of google-t5/t5-11b).

        dtype: weight dtype; the reference runs T5 in float32 and casts the output to bf16.
        """
        path = Path(path)
        if not path.is_dir():
            raise ValueError(f'T5 model path {path} is not a local directory (models are never '
                             f'downloaded; copy google-t5/t5-11b there first).')
        try:
            from transformers import (  # optional: only to encode instructions on the fly
                AutoConfig, AutoTokenizer, T5EncoderModel)
        except ImportError:
            raise ImportError('on-the-fly T5 encoding needs the `transformers` package '
                              '(pip install transformers).') from None
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if expected_width is not None and config.d_model != expected_width:  # before 11B loads
            raise ValueError(f'the T5 model at {path} has width (d_model) {config.d_model}; '
                             f'Cosmos Policy needs {expected_width} (the google-t5/t5-11b '
                             f'encoder).')
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = T5EncoderModel.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        return cls(tokenizer, model, device=device, max_length=max_length,
                   expected_width=expected_width)

    @torch.inference_mode()
    def encode(self, instruction):
        """instruction -> bf16 CPU tensor (1, max_length, width), zero after the real tokens."""
        if not isinstance(instruction, str) or not instruction:
            raise ValueError(f'instruction must be a non-empty string. Got {instruction!r}.')
        batch = self.tokenizer([instruction], return_tensors='pt', truncation=True,
                               padding='max_length', max_length=self.max_length)
        ids = batch['input_ids'].to(self.device)
        mask = batch['attention_mask'].to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (1, L, D)
        if self.expected_width is not None and hidden.shape[-1] != self.expected_width:
            raise ValueError(f'the T5 encoder returned width {hidden.shape[-1]}; expected '
                             f'{self.expected_width}.')
        length = int(mask[0].sum())
        hidden = hidden.clone()
        hidden[:, length:] = 0
        return hidden.to(torch.bfloat16).cpu()


# --- command line ------------------------------------------------------------------------------
def main(argv=None):
    """`convert IN.pkl OUT.safetensors` or `show FILE` (lists the instructions)."""
    parser = argparse.ArgumentParser(
        prog='python -m cosmos_policy_ros.engine.text',
        description='Convert released Cosmos Policy T5 embedding pickles to safetensors.')
    commands = parser.add_subparsers(dest='command', required=True)
    convert = commands.add_parser('convert', help='*.pkl (or torch.save file) -> *.safetensors')
    convert.add_argument('source')
    convert.add_argument('destination')
    show = commands.add_parser('show', help='list the instructions of a converted file')
    show.add_argument('path')
    args = parser.parse_args(argv)
    try:
        if args.command == 'convert':
            table = TextEmbeddings.from_pickle(args.source)
            table.save(args.destination)
            print(f'{args.destination}: {len(table)} instructions, '
                  f'{table.embedding_shape}, {table.dtype}')
        else:
            table = TextEmbeddings.load(args.path)
            print(f'{args.path}: {len(table)} instructions, {table.embedding_shape}, '
                  f'{table.dtype}')
            for instruction in table.instructions:
                print(f'  {instruction!r}')
    except (ValueError, UnsafePickleError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
