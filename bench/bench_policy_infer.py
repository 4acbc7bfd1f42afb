"""(f2) End-to-end CosmosPolicy.infer: placeholder until the facade (engine/policy.py) exists.

To fill in (one file, no runner change): build a CosmosPolicy on a synthetic model directory
(cosmos_policy_ros.engine.synthetic.write_synthetic_model, --size tiny on the CPU), warm it up,
then ctx.compare() infer(observation) with (a) 1 sample and (b) best-of-N batched vs N
sequential infers, and report the share of images, VAE encode, diffusion and read-out in the
measured total (the engine's cost should be the network's cost).
"""
import importlib.util

NAME = 'policy_infer'
TITLE = 'End-to-end CosmosPolicy.infer and best-of-N through the facade (placeholder)'
ORDER = 90


def run(ctx):
    if importlib.util.find_spec('cosmos_policy_ros.engine.policy') is None:
        return {'status': 'skipped',
                'reason': 'the CosmosPolicy facade (cosmos_policy_ros/engine/policy.py) does not '
                          'exist yet'}
    return {'status': 'skipped',
            'reason': 'the facade exists; this benchmark is still to be written (see the module '
                      'docstring)'}
