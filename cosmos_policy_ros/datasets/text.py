"""The T5 embedding file of a dataset's task texts: ``<data_dir>/t5_embeddings.pkl`` (datasets/).

The upstream classes load a pickle of ``{command: torch.bfloat16 (1, 512, 1024)}`` (T:40-45)
and look every sample's command up in it, demonstrations and rollouts alike (a missing key
fails at the first such sample). One of three sources makes the table:

``encoder``    a local T5 encoder directory (google-t5/t5-11b): engine/text.py ``T5Encoder``
               encodes each task as the reference's ``get_t5_emb.py`` does (512 tokens,
               rows after the real tokens zeroed, bf16);
``file``       embeddings made before: a released ``*_t5_embeddings.pkl`` (read with the
               engine's restricted unpickler) or a model directory's
               ``t5_embeddings.safetensors``; every task must be in it;
``stand_in``   seeded random vectors, zero after a rough token count
               (engine/synthetic_checkpoints.py), for tests and the sim, whose models
               condition on such vectors (the model directory ships them for the node).

The pickle is written with plain ``pickle.dump``, as the reference's scripts write it.
"""
from pathlib import Path
import pickle

import torch

from cosmos_policy_ros.datasets.reader import complete_manifest
from cosmos_policy_ros.engine.synthetic_checkpoints import t5_embeddings
from cosmos_policy_ros.engine.text import load_embedding_pickle, T5Encoder, TextEmbeddings

T5_FILE = 't5_embeddings.pkl'


def embedding_table(tasks, *, encoder=None, file=None, stand_in=None):
    """{task: bf16 tensor (1, 512, 1024)} for every task in `tasks` (kept in that order)."""
    tasks = list(dict.fromkeys(tasks))
    given = [name for name, value in (('--t5-encoder', encoder), ('--t5-embeddings', file),
                                      ('--t5-stand-in', stand_in)) if value is not None]
    if len(given) != 1:
        raise ValueError(f'the T5 embeddings need exactly one of --t5-encoder DIR, '
                         f'--t5-embeddings FILE or --t5-stand-in SEED; got {given or "none"}.')
    if encoder is not None:
        model = T5Encoder.from_pretrained(encoder)
        return {task: model.encode(task) for task in tasks}
    if stand_in is not None:
        return t5_embeddings(tasks, seed=int(stand_in))
    table = read_embeddings(file)
    missing = [task for task in tasks if task not in table]
    if missing:
        raise ValueError(f'--t5-embeddings {file}: no embedding of task(s) {missing}; it has '
                         f'{sorted(table)[:10]}.')
    return {task: table[task].to(torch.bfloat16) for task in tasks}


def read_embeddings(path):
    """{instruction: tensor (1, L, D)} of a pickle or of the package's safetensors file."""
    if str(path).endswith('.safetensors'):
        table = TextEmbeddings.load(path)
        return {text: table.lookup(text) for text in table.instructions}
    return load_embedding_pickle(path)


def write_pickle(path, table):
    """Write the table as the reference does (pickle.dump of the dict)."""
    with open(path, 'wb') as stream:
        pickle.dump(dict(table), stream)


def text_table(directory, tasks):
    """{task: bf16 tensor (1, 512, 1024)} of `tasks` from the directory's T5 pickle."""
    root = Path(directory)
    data = complete_manifest(root)
    table = read_embeddings(root / data['t5_embeddings'])
    missing = [task for task in tasks if task not in table]
    if missing:
        raise ValueError(f'{root / data["t5_embeddings"]}: no embedding of task(s) {missing}')
    return {task: table[task].to(torch.bfloat16) for task in tasks}
