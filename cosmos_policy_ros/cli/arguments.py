"""What the console scripts share in their argument parsers: help that shows every default.

``DefaultsHelpFormatter`` (the ``formatter_class`` of every parser and subparser) appends
"(default: X)" to an option's help unless the help already says its default in words (then it
contains the word "default") or there is nothing to show (no default, a flag). Every option of
every script has help text (test/cli/test_cli_help.py).
"""
import argparse


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, with each option's default appended to its help."""

    def _get_help_string(self, action):
        text = action.help or ''
        default = action.default
        if ('default' in text or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or not action.option_strings):
            return text
        if isinstance(default, (list, tuple)):
            default = ' '.join(str(item) for item in default) or 'none'
        return f'{text} (default: {str(default).replace("%", "%%")})'
