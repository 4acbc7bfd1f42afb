"""The README's runnable sampler example runs as written and is as accurate as it says."""
import os
from pathlib import Path
import re

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[1]))


def _example(marker):
    text = (ROOT / 'README.md').read_text()
    blocks = [block for block in re.findall(r'```python\n(.*?)```', text, flags=re.DOTALL)
              if marker in block]
    assert len(blocks) == 1, f'README lost its example with {marker!r}'
    return blocks[0]


def test_sampler_example_converges_to_the_exact_solution(capsys):
    namespace = {}
    exec(compile(_example('x0_fn'), 'README.md', 'exec'), namespace)  # noqa: S102
    sample, x0_fn = namespace['sample'], namespace['x0_fn']
    x_init, exact = namespace['x_init'], namespace['exact']
    errors = [float((sample(x0_fn, x_init, num_steps=n) - exact).abs().max())
              for n in (17, 33, 65)]
    assert errors[-1] < 1e-3 * float(exact.abs().max())
    # Second order: halving the step divides the error by about four.
    assert 3.0 < errors[0] / errors[1] < 5.0 and 3.0 < errors[1] / errors[2] < 5.0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith('[80.0, 42.29')
