"""The example in docs/engine.md runs as written (a toy network on the CPU)."""
import os
from pathlib import Path
import re

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[2]))


def test_engine_doc_example_runs(capsys):
    text = (ROOT / 'docs' / 'engine.md').read_text()
    blocks = re.findall(r'```python\n(.*?)```', text, flags=re.DOTALL)
    example = [block for block in blocks if 'generate(ToyNet()' in block]
    assert len(example) == 1, 'docs/engine.md lost its runnable example'
    namespace = {}
    exec(compile(example[0], 'docs/engine.md', 'exec'), namespace)  # noqa: S102
    assert namespace['result'].actions.shape == (1, 16, 7)
    assert namespace['values'].value.shape == (3,)
    assert 0 <= namespace['best'] < 3
    assert '(1, 16, 7)' in capsys.readouterr().out
