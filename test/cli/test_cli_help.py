"""Every option of every console script has help text that says its default."""
import argparse

import pytest

from cosmos_policy_ros.cli import convert, dataset, demo, replay, sim, synthetic, train
from cosmos_policy_ros.cli.arguments import DefaultsHelpFormatter

PARSERS = {
    'cosmos-policy-convert': convert.build_parser,
    'cosmos-policy-dataset': dataset.build_parser,
    'cosmos-policy-demo': demo.build_parser,
    'cosmos-policy-replay': replay.build_parser,
    'cosmos-policy-sim': sim.build_parser,
    'cosmos-policy-sim stitching': sim.stitching_parser,
    'cosmos-policy-synthetic': synthetic.build_parser,
    'cosmos-policy-train': train.build_parser,
}


def _parsers(name, parser):
    """(name, parser) of `parser` and of each of its subcommands."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(f'{name} {sub_name}', sub)


def _all():
    return [item for name, build in PARSERS.items() for item in _parsers(name, build())]


@pytest.mark.parametrize('name,parser', _all(), ids=lambda item: item
                         if isinstance(item, str) else '')
def test_every_option_has_help_with_its_default(name, parser):
    assert isinstance(parser.formatter_class, type) and issubclass(
        parser.formatter_class, DefaultsHelpFormatter), name
    formatter = parser._get_formatter()
    one_of = {id(action) for group in parser._mutually_exclusive_groups if group.required
              for action in group._group_actions}  # one of them must be given: no default
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        label = f'{name} {"/".join(action.option_strings) or action.dest}'
        assert action.help, f'{label} has no help'
        text = formatter._get_help_string(action) % {'default': action.default}
        if (not action.option_strings or action.required or isinstance(action.default, bool)
                or id(action) in one_of):
            continue  # positional, required, or a flag: no default to tell
        if action.default is None:
            assert 'default' in text, f'{label}: its help does not say what happens without it'
        else:
            shown = (' '.join(map(str, action.default)) or 'none'
                     if isinstance(action.default, (list, tuple)) else str(action.default))
            assert shown in text, f'{label}: its help does not show its default {shown!r}'


def test_sim_eval_and_demo_say_what_they_are():
    parser = sim.build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {name: sub.format_help() for name, sub in subcommands.choices.items()}
    assert helps['eval'] != helps['demo']
    assert 'one line per episode' in helps['demo'] and 'summary.json' in helps['eval']


def test_the_formatter_appends_defaults_only_where_there_is_one():
    parser = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    parser.add_argument('--rate', type=float, default=2.0, help='replay rate')
    parser.add_argument('--topics', nargs='+', default=['a', 'b'], help='topics')
    parser.add_argument('--out', help='output (default: next to the bag)')
    parser.add_argument('--quiet', action='store_true', help='less output')
    text = ' '.join(parser.format_help().split())
    assert 'replay rate (default: 2.0)' in text and 'topics (default: a b)' in text
    assert 'output (default: next to the bag)' in text and 'less output (default' not in text
