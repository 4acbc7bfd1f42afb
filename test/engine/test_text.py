"""Text embeddings: safe pickle conversion, safetensors round trip, lookup, cache, T5 encoding."""
import json
import os
import pickle

import pytest
from safetensors import safe_open
import torch

from cosmos_policy_ros.engine import text
from cosmos_policy_ros.engine.text import (
    T5Encoder, TextEmbeddings, UnknownInstructionError, UnsafePickleError)

INSTRUCTIONS = ('put the bowl on the plate', 'open the top drawer', 'turn on the stove')


def _released_like(seed=0, dtype=torch.bfloat16):
    """What the released *_t5_embeddings.pkl holds: {instruction: (1, 512, 1024) bf16}."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = {}
    for instruction in INSTRUCTIONS:
        value = torch.randn(1, 512, 1024, generator=generator)
        value[:, 20:] = 0  # zero after the real tokens, like the reference
        embeddings[instruction] = value.to(dtype)
    return embeddings


def _write(path, payload):
    path.write_bytes(payload)
    return path


# --- malicious pickles: refused, nothing executed -----------------------------------------------
class _Exec:
    """Unpickling this with plain pickle runs Python code that creates `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f'open({self.path!r}, "w").write("pwned")',)


class _System:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f'touch {self.path}',)


def test_the_exec_payload_is_real(tmp_path):
    # Positive control: plain pickle does run it, so the refusals below mean something.
    marker = tmp_path / 'control'
    pickle.loads(pickle.dumps({'x': _Exec(marker)}))
    assert marker.exists()


@pytest.mark.parametrize('payload, refused', [
    (_Exec, 'builtins.exec'),
    (_System, f'{os.system.__module__}.system'),
])
def test_malicious_pickle_is_refused_without_running(tmp_path, payload, refused):
    marker = tmp_path / 'marker'
    embeddings = _released_like()
    embeddings['evil'] = payload(marker)  # after legitimate tensors, as a dict value
    path = _write(tmp_path / 'evil.pkl', pickle.dumps(embeddings))
    with pytest.raises(UnsafePickleError, match=f'refused global {refused}'):
        TextEmbeddings.from_pickle(path)
    assert not marker.exists()


@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
def test_malicious_bytes_inside_a_tensor_storage_are_refused(tmp_path):
    # The storage of a pickled tensor is a nested torch.save stream; a payload hidden there
    # must be refused as well (torch's weights-only loader reads it).
    marker = tmp_path / 'marker'

    class _Storage:
        def __reduce__(self):
            return torch.storage._load_from_bytes, (pickle.dumps(_Exec(marker)),)

    path = _write(tmp_path / 'nested.pkl', pickle.dumps({'a': _Storage()}))
    with pytest.raises(UnsafePickleError, match='weights_only'):
        TextEmbeddings.from_pickle(path)
    assert not marker.exists()


def test_tensor_rebuild_arguments_are_checked(tmp_path):
    class _Hooked:
        def __reduce__(self):
            storage = torch.zeros(4).storage()
            return torch._utils._rebuild_tensor_v2, (storage, 0, (4,), (1,), False, {'h': 1})

    path = _write(tmp_path / 'hooks.pkl', pickle.dumps({'a': _Hooked()}))
    with pytest.raises(UnsafePickleError, match='backward hooks'):
        text.load_embedding_pickle(path)

    class _OutOfBounds:
        def __reduce__(self):
            storage = torch.zeros(4).storage()
            return torch._utils._rebuild_tensor_v2, (storage, 0, (1, 512, 1024), (0, 1024, 1),
                                                     False, {})

    # Last element: 511 * 1024 + 1023 * 1 = 524287, far beyond the 4 stored values.
    path = _write(tmp_path / 'bounds.pkl', pickle.dumps({'a': _OutOfBounds()}))
    with pytest.raises(UnsafePickleError, match='reaches element 524287 of a storage of 4'):
        text.load_embedding_pickle(path)


# --- the released format and its variants ------------------------------------------------------
def test_released_pickle_converts_exactly(tmp_path):
    embeddings = _released_like()
    path = _write(tmp_path / 'libero_t5_embeddings.pkl', pickle.dumps(embeddings))
    table = TextEmbeddings.from_pickle(path)
    assert table.instructions == INSTRUCTIONS and len(table) == 3
    assert table.dtype == torch.bfloat16 and table.embedding_shape == (512, 1024)
    for instruction, value in embeddings.items():
        result = table.lookup(instruction)
        assert result.shape == (1, 512, 1024) and result.dtype == torch.bfloat16
        assert torch.equal(result, value)


@pytest.mark.parametrize('writer', ['torch_zip', 'torch_legacy', 'protocol2'])
def test_torch_save_and_old_protocols(tmp_path, writer):
    embeddings = _released_like(seed=1)
    path = tmp_path / 'embeddings.bin'
    if writer == 'torch_zip':
        torch.save(embeddings, path)
    elif writer == 'torch_legacy':
        torch.save(embeddings, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(embeddings, protocol=2))
    table = TextEmbeddings.from_pickle(path)
    for instruction, value in embeddings.items():
        assert torch.equal(table.lookup(instruction), value)


def test_torch_save_with_a_malicious_object_is_refused(tmp_path):
    marker = tmp_path / 'marker'
    path = tmp_path / 'evil.pt'
    torch.save({'a': _Exec(marker)}, path)
    with pytest.raises(UnsafePickleError, match='weights_only'):
        TextEmbeddings.from_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize('writer', ['pickle', 'torch'])
def test_numpy_arrays_are_accepted(tmp_path, writer):
    arrays = {key: value.float().numpy()[0] for key, value in _released_like(2).items()}
    path = tmp_path / 'numpy.pkl'
    if writer == 'pickle':
        path.write_bytes(pickle.dumps(arrays))
    else:
        torch.save(arrays, path)
    table = TextEmbeddings.from_pickle(path)
    assert table.dtype == torch.float32
    for instruction, array in arrays.items():  # (512, 1024) arrays become (1, 512, 1024)
        assert torch.equal(table.lookup(instruction), torch.from_numpy(array)[None])


def test_mixed_dtypes_become_bf16_like_the_reference_input():
    embeddings = _released_like(3)
    fp32 = torch.randn(1, 512, 1024)
    embeddings['stack the cups'] = fp32  # what the reference appends after an on-the-fly encode
    table = TextEmbeddings.from_dict(embeddings)
    assert table.dtype == torch.bfloat16
    assert torch.equal(table.lookup('stack the cups'), fp32.to(torch.bfloat16))
    assert torch.equal(table.lookup(INSTRUCTIONS[0]), embeddings[INSTRUCTIONS[0]])


@pytest.mark.parametrize('data, message', [
    ({1: torch.zeros(1, 512, 1024)}, 'instructions must be strings, got key 1'),
    ({'a': torch.zeros(1, 512, 768)}, r"'a' has shape \(1, 512, 768\); expected \(1, 512, 1024\)"),
    ({'a': torch.zeros(2, 512, 1024)}, r'expected \(1, L, D\) or \(L, D\)'),
    ({'a': torch.zeros(1, 512, 1024, dtype=torch.int32)}, 'expected floating point'),
    ({'a': 'not a tensor'}, "'a' is a str"),
    ({}, 'no instructions'),
])
def test_bad_contents_are_named(data, message):
    with pytest.raises(ValueError, match=message):
        TextEmbeddings.from_dict(data)


def test_a_pickle_that_is_not_a_dict_or_not_a_pickle(tmp_path):
    with pytest.raises(ValueError, match='expected a dict'):
        TextEmbeddings.from_pickle(_write(tmp_path / 'list.pkl', pickle.dumps([1, 2])))
    with pytest.raises(ValueError, match='garbage.pkl is not a readable T5 embedding pickle'):
        TextEmbeddings.from_pickle(_write(tmp_path / 'garbage.pkl', b'\x00not a pickle'))
    with pytest.raises(ValueError, match='cannot read'):
        TextEmbeddings.from_pickle(tmp_path / 'missing.pkl')


# --- safetensors file --------------------------------------------------------------------------
def test_save_and_load_round_trip(tmp_path):
    embeddings = _released_like(4)
    path = tmp_path / 'libero.safetensors'
    TextEmbeddings.from_dict(embeddings).save(path)
    # The documented format: one (N, 512, 1024) tensor in the original dtype, the instructions
    # in order in the metadata.
    with safe_open(str(path), framework='pt') as handle:
        assert list(handle.keys()) == ['embeddings']
        stored = handle.get_tensor('embeddings')
        metadata = handle.metadata()
    assert stored.shape == (3, 512, 1024) and stored.dtype == torch.bfloat16
    assert metadata['format'] == 'cosmos_policy_ros/t5-embeddings'
    assert metadata['version'] == '1'
    assert json.loads(metadata['instructions']) == list(INSTRUCTIONS)
    table = TextEmbeddings.load(path)
    assert table.instructions == INSTRUCTIONS and table.dtype == torch.bfloat16
    for instruction, value in embeddings.items():
        assert torch.equal(table.lookup(instruction), value)
    assert not (tmp_path / 'libero.safetensors.tmp').exists()


def test_unicode_instructions_survive(tmp_path):
    table = TextEmbeddings.from_dict({'ponga el tazón en el plato': torch.ones(1, 512, 1024)})
    table.save(tmp_path / 'es.safetensors')
    assert 'ponga el tazón en el plato' in TextEmbeddings.load(tmp_path / 'es.safetensors')


def test_load_refuses_foreign_safetensors(tmp_path):
    from safetensors.torch import save_file
    save_file({'embeddings': torch.zeros(1, 512, 1024)}, str(tmp_path / 'foreign.safetensors'))
    with pytest.raises(ValueError, match='not a cosmos_policy_ros text-embedding file.*convert'):
        TextEmbeddings.load(tmp_path / 'foreign.safetensors')
    with pytest.raises(ValueError, match='does not exist'):
        TextEmbeddings.load(tmp_path / 'missing.safetensors')


# --- lookup and cache --------------------------------------------------------------------------
def test_lookup_is_exact_and_names_the_nearest():
    table = TextEmbeddings.from_dict(_released_like())
    assert 'open the top drawer' in table and 'open the top drawer ' not in table
    with pytest.raises(UnknownInstructionError) as info:
        table.lookup('open the top drawer\n')
    message = str(info.value)
    assert "unknown instruction 'open the top drawer\\n'" in message
    assert 'only in surrounding whitespace' in message
    assert message.index("'open the top drawer'") < message.index("'turn on the stove'")
    with pytest.raises(KeyError, match='only in letter case'):
        table.lookup('Open the top drawer')
    with pytest.raises(KeyError, match="Nearest known: 'put the bowl on the plate'"):
        table.lookup('put the bowl on a plate')
    with pytest.raises(TypeError, match='must be a string'):
        table.lookup(None)


def test_cache_returns_the_same_device_copy():
    embeddings = _released_like()
    table = TextEmbeddings.from_dict(embeddings, cache_size=2)
    first = table.lookup(INSTRUCTIONS[0], device='cpu')
    assert table.lookup(INSTRUCTIONS[0], device=torch.device('cpu')) is first  # no new copy
    as_float = table.lookup(INSTRUCTIONS[0], dtype=torch.float32)
    assert as_float.dtype == torch.float32
    assert torch.equal(as_float, embeddings[INSTRUCTIONS[0]].float())
    assert table.lookup(INSTRUCTIONS[0], dtype=torch.float32) is as_float
    table.lookup(INSTRUCTIONS[1])  # third entry: the least recently used (first) is evicted
    assert table.lookup(INSTRUCTIONS[0], dtype=torch.float32) is as_float
    again = table.lookup(INSTRUCTIONS[0])
    assert again is not first and torch.equal(again, first)
    table.clear_cache()
    assert table.lookup(INSTRUCTIONS[0]) is not again


def test_memory_mapped_rows_are_independent(tmp_path):
    embeddings = _released_like(5)
    TextEmbeddings.from_dict(embeddings).save(tmp_path / 'e.safetensors')
    table = TextEmbeddings.load(tmp_path / 'e.safetensors')
    table.lookup(INSTRUCTIONS[2]).fill_(7)  # a careless caller
    table.clear_cache()
    assert torch.equal(table.lookup(INSTRUCTIONS[2]), embeddings[INSTRUCTIONS[2]])


def test_cache_size_is_validated():
    with pytest.raises(ValueError, match='`cache_size` must be a positive integer. Got 0'):
        TextEmbeddings.from_dict(_released_like(), cache_size=0)


def test_command_line_convert_and_show(tmp_path, capsys):
    source = _write(tmp_path / 'robocasa_t5_embeddings.pkl', pickle.dumps(_released_like()))
    target = tmp_path / 'robocasa.safetensors'
    assert text.main(['convert', str(source), str(target)]) == 0
    assert '3 instructions' in capsys.readouterr().out
    assert text.main(['show', str(target)]) == 0
    assert "'turn on the stove'" in capsys.readouterr().out
    evil = _write(tmp_path / 'evil.pkl', pickle.dumps({'a': _Exec(tmp_path / 'marker')}))
    assert text.main(['convert', str(evil), str(tmp_path / 'out.safetensors')]) == 1
    assert 'refused global builtins.exec' in capsys.readouterr().err
    assert not (tmp_path / 'marker').exists() and not (tmp_path / 'out.safetensors').exists()


# --- on-the-fly T5 encoding with a tiny local model --------------------------------------------
VOCAB = {'<pad>': 0, '</s>': 1, '<unk>': 2, 'pick': 3, 'up': 4, 'the': 5, 'bowl': 6, 'cup': 7}


@pytest.fixture(scope='module')
def tiny_t5(tmp_path_factory):
    """A random 16-wide T5 encoder and a word-level tokenizer that appends </s>, saved locally."""
    transformers = pytest.importorskip('transformers')
    from tokenizers import models, pre_tokenizers, processors, Tokenizer
    path = tmp_path_factory.mktemp('tiny_t5')
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token='<unk>'))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single='$A </s>', special_tokens=[('</s>', 1)])
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token='<pad>', eos_token='</s>',
        unk_token='<unk>').save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=len(VOCAB), d_model=16, d_kv=4, d_ff=32,
                                   num_layers=2, num_heads=4, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0)
    model = transformers.T5EncoderModel(config).eval()
    model.save_pretrained(path)
    return path, model


def test_encoder_matches_the_reference_recipe(tiny_t5):
    path, model = tiny_t5
    encoder = T5Encoder.from_pretrained(path, expected_width=16)
    result = encoder.encode('pick up the bowl')
    assert result.shape == (1, 512, 16) and result.dtype == torch.bfloat16
    # Oracle: token ids written by hand (4 words + </s>, padded with 0), the model run directly.
    ids = torch.zeros(1, 512, dtype=torch.long)
    ids[0, :5] = torch.tensor([3, 4, 5, 6, 1])
    mask = (torch.arange(512) < 5).long()[None]
    with torch.no_grad():
        raw = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(result[:, :5], raw[:, :5].to(torch.bfloat16))  # EOS (index 4) is kept
    assert result[0, 4].abs().sum() > 0
    assert torch.count_nonzero(result[:, 5:]) == 0
    assert torch.count_nonzero(raw[:, 5:]) > 0  # the zeroing is what removed them


def test_encoder_width_check_is_explicit(tiny_t5):
    path, model = tiny_t5
    with pytest.raises(ValueError, match='width \\(d_model\\) 16; Cosmos Policy needs 1024'):
        T5Encoder.from_pretrained(path)
    with pytest.raises(ValueError, match='needs 1024'):
        T5Encoder(None, model)
    with pytest.raises(ValueError, match='not a local directory'):
        T5Encoder.from_pretrained('google-t5/t5-11b')  # a hub id: never downloaded


def test_unknown_instructions_are_encoded_when_an_encoder_is_attached(tiny_t5, tmp_path):
    path, _ = tiny_t5
    encoder = T5Encoder.from_pretrained(path, expected_width=16)
    known = {'pick up the cup': encoder.encode('pick up the cup')}
    table = TextEmbeddings.from_dict(known, encoder=encoder, expected_shape=(512, 16))
    added = table.lookup('pick up the bowl')
    assert torch.equal(added, encoder.encode('pick up the bowl'))
    assert table.instructions == ('pick up the cup', 'pick up the bowl') and len(table) == 2
    table.save(tmp_path / 'grown.safetensors')
    reloaded = TextEmbeddings.load(tmp_path / 'grown.safetensors', expected_shape=(512, 16))
    assert torch.equal(reloaded.lookup('pick up the bowl'), added)
    with pytest.raises(ValueError, match=r'expected \(N, 512, 1024\)'):
        TextEmbeddings.load(tmp_path / 'grown.safetensors')


def test_io_helpers_do_not_touch_the_network(monkeypatch, tiny_t5):
    # Any attempt to open a socket fails the test.
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError('network access attempted')

    monkeypatch.setattr(socket.socket, 'connect', refuse)
    path, _ = tiny_t5
    result = T5Encoder.from_pretrained(path, expected_width=16).encode('pick up the cup')
    assert result.shape == (1, 512, 16)
