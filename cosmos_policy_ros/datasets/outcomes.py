"""The outcome (success label) of an episode (datasets/, stdlib only).

Three sources, checked against each other:

* a message in the bag on the outcome topic (default ``/episode_outcome``), the last one
  counting: std_msgs/Bool, or std_msgs/String holding ``success`` / ``failure`` (also
  ``true`` / ``false``, ``1`` / ``0``) or a JSON object with a boolean ``success`` and an
  optional number ``score`` (the sim writes ``{"success": ..., "seed": ..., ...}``);
* ``--label success|failure`` for every bag of the command;
* ``--labels FILE.csv``: a header row with ``bag`` and ``success`` (and optionally ``score``)
  columns; ``bag`` is a bag's path as given or its file name.

A bag whose message and whose label disagree is an error naming both. The text of the message
(its JSON, for the sim: seed, targets, ...) is kept with the exported episode.
"""
import csv
from dataclasses import dataclass
import json
import math
from pathlib import Path
from typing import Optional

OUTCOME_TOPIC = '/episode_outcome'
WORDS = {'success': True, 'true': True, '1': True, 'failure': False, 'false': False, '0': False}


@dataclass(frozen=True)
class Outcome:
    """An episode's label: success, an optional score (ALOHA's success_score) and its text."""

    success: bool
    score: Optional[float] = None
    text: str = ''  # the outcome message as recorded ('' for a label)
    source: str = ''  # where it came from, for messages


def label_value(text, where):
    """success/failure (or true/false, 1/0) -> bool; ValueError naming `where` otherwise."""
    value = WORDS.get(str(text).strip().lower())
    if value is None:
        raise ValueError(f'{where}: outcome {text!r} is not one of {sorted(WORDS)}')
    return value


def outcome_of_message(message, msgtype, where):
    """The Outcome of one outcome-topic message."""
    if msgtype == 'std_msgs/msg/Bool':
        return Outcome(bool(message.data), text=json.dumps(bool(message.data)), source=where)
    if msgtype != 'std_msgs/msg/String':
        raise ValueError(f'{where} is {msgtype}; an outcome is a std_msgs/String or '
                         f'std_msgs/Bool')
    text = str(message.data)
    stripped = text.strip()
    if stripped.startswith('{'):
        try:
            data = json.loads(stripped)
        except ValueError as error:
            raise ValueError(f'{where}: outcome is not valid JSON: {error}') from None
        if not isinstance(data.get('success'), bool):
            raise ValueError(f'{where}: the outcome JSON needs a boolean "success"; got '
                             f'{data.get("success")!r}')
        score = data.get('score')
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not math.isfinite(score)):
            raise ValueError(f'{where}: the outcome "score" must be a finite number; got '
                             f'{score!r}')
        return Outcome(data['success'], None if score is None else float(score), text, where)
    return Outcome(label_value(stripped, where), text=text, source=where)


class Labels:
    """Labels given on the command line: one for all bags, or a CSV table by bag."""

    def __init__(self, label=None, csv_path=None):
        self.default = None if label is None else Outcome(label_value(label, '--label'),
                                                          source='--label')
        self.table = {}
        if csv_path is not None:
            self.table = read_labels_csv(csv_path)

    def for_bag(self, bag):
        bag = Path(bag)
        for key in (str(bag), bag.name, str(bag).rstrip('/')):
            if key in self.table:
                return self.table[key]
        return self.default


def read_labels_csv(path):
    """{bag: Outcome} from a labels CSV (see the module docstring)."""
    path = Path(path)
    try:
        with open(path, newline='') as stream:
            rows = list(csv.DictReader(stream))
            columns = set(rows[0]) if rows else set()
    except OSError as error:
        raise ValueError(f'--labels {path}: {error.strerror}') from None
    if not {'bag', 'success'} <= columns:
        raise ValueError(f'--labels {path}: needs a header with columns bag, success (and '
                         f'optionally score); got {sorted(columns)}')
    table = {}
    for number, row in enumerate(rows, start=2):
        where = f'--labels {path} line {number}'
        score = (row.get('score') or '').strip()
        try:
            score = float(score) if score else None
        except ValueError:
            raise ValueError(f'{where}: score {score!r} is not a number') from None
        bag = row['bag'].strip().rstrip('/')
        if bag in table:
            raise ValueError(f'{where}: bag {bag!r} is labelled twice')
        table[bag] = Outcome(label_value(row['success'], where), score, source=where)
    return table


def combine(recorded, given, bag):
    """The episode's Outcome from its message (or None) and its label (or None)."""
    if recorded is not None and given is not None and recorded.success != given.success:
        raise ValueError(f'bag {bag}: {recorded.source} says '
                         f'{"success" if recorded.success else "failure"} but {given.source} '
                         f'says {"success" if given.success else "failure"}')
    if recorded is None:
        return given
    if given is not None and given.score is not None:
        return Outcome(recorded.success, given.score, recorded.text, recorded.source)
    return recorded
