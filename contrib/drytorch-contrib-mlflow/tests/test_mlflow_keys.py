"""Names and values made to fit MLflow: pure functions, no store."""

from __future__ import annotations

import datetime
import math
import os
import re

import pytest

from drytorch_contrib_mlflow import keys

VALID = re.compile(r'^[/\w.\- ]*$')  # MLflow's rule (colons left out everywhere)


def acceptable(key: str) -> bool:
    norm = os.path.normpath(key)
    return (
        bool(VALID.match(key))
        and len(key) <= keys.MAX_KEY_LENGTH
        and norm == key
        and norm not in ('.', '..')
        and not norm.startswith(('..', '/'))
    )


def test_flatten_nests_tables_and_keeps_lists_whole() -> None:
    table = {'a': 1, 'b': {'c': {'d': 'x'}, 'e': [1, {'f': 2}]}, 'empty': {}}
    assert keys.flatten(table) == {
        'a': 1,
        'b.c.d': 'x',
        'b.e': [1, {'f': 2}],
        'empty': {},
    }
    assert keys.flatten(3) == {'config': 3}


@pytest.mark.parametrize(
    ('value', 'text'),
    [
        ('plain text', 'plain text'),
        (3, '3'),
        (0.001, '0.001'),
        (True, 'true'),
        (math.inf, 'inf'),
        ([64, 32], '[64, 32]'),
        ({'a': [1, 2]}, '{"a": [1, 2]}'),
        ({}, '{}'),
        (datetime.date(2026, 1, 2), '2026-01-02'),
        ([datetime.date(2026, 1, 2), math.nan], '["2026-01-02", "nan"]'),
        ('ünïcode', 'ünïcode'),
    ],
)
def test_param_values_are_text(value: object, text: str) -> None:
    assert keys.param_value(value) == text


def test_long_values_are_truncated_and_named() -> None:
    values, truncated = keys.params({'short': 'x', 'long': 'y' * 10_000})
    assert len(values['long']) == keys.MAX_PARAM_LENGTH
    assert values['long'].endswith(keys.TRUNCATED)
    assert values['long'].startswith('y' * 5000)
    assert truncated == ['long']
    assert keys.params({'edge': 'z' * keys.MAX_PARAM_LENGTH}) == (
        {'edge': 'z' * keys.MAX_PARAM_LENGTH},
        [],
    )


def test_param_keys_are_made_acceptable_and_stay_unique() -> None:
    table = {'a/b': 1, 'a?b': 2, 'a_b': 3, '..': {'x': 4}, 'k' * 300: 5}
    values, _ = keys.params(table)
    assert len(values) == 5
    assert all(acceptable(key) for key in values), values.keys()
    assert values['a_b'] == '1'  # the first of the three that read a_b
    assert values['_._._.x'] == '4'


@pytest.mark.parametrize(
    ('model', 'source', 'metric'),
    [
        ('net', 'Trainer', 'MSE'),
        ('net', 'Validation', 'Accuracy top-5'),
        ('enc/dec', 'Test', '..'),
        ('m' * 200, 'Trainer', 'x' * 200),
        ('ünï', 'Trainer', 'F1:macro'),
    ],
)
def test_metric_keys_are_acceptable(model: str, source: str, metric: str) -> None:
    key = keys.metric_key(model, source, metric)
    assert acceptable(key), key
    checkpoint = keys.checkpoint_tag(model, 3, 2)
    assert acceptable(checkpoint), checkpoint


def test_metric_keys_read_back() -> None:
    assert keys.metric_key('net', 'Validation', 'MSE') == 'net/Validation/MSE'
    assert keys.parse_metric_key('net/Validation/MSE') == ('net', 'Validation', 'MSE')
    assert keys.parse_metric_key('loss') is None
    assert keys.parse_metric_key('a/b/c/d') is None
    assert keys.parse_metric_key('a//c') is None


def test_checkpoint_tags_follow_the_file_names() -> None:
    assert keys.checkpoint_tag('net', 3) == 'drytorch.checkpoint/net/epoch_3'
    assert keys.checkpoint_tag('net', 3, 5) == 'drytorch.checkpoint/net/epoch_3_batch_5'


def test_tag_values_fit() -> None:
    assert keys.tag_value('e' * 9000).endswith(keys.TRUNCATED)
    assert len(keys.tag_value('e' * 9000)) == keys.MAX_TAG_LENGTH
    assert keys.tag_value(7) == '7'


def test_uris_are_made_absolute() -> None:
    cwd = os.getcwd()
    assert keys.absolute_uri('sqlite:///mlflow.db') == f'sqlite:///{cwd}/mlflow.db'
    assert keys.absolute_uri('sqlite:////abs/m.db') == 'sqlite:////abs/m.db'
    assert keys.absolute_uri('sqlite:///:memory:') == 'sqlite:///:memory:'
    assert keys.absolute_uri('http://host:5000') == 'http://host:5000'
    assert keys.absolute_uri('databricks') == 'databricks'
    assert keys.absolute_uri('mlruns') == f'file://{cwd}/mlruns'


def test_local_stores() -> None:
    assert str(keys.local_store('sqlite:////abs/m.db?timeout=5')) == '/abs/m.db'
    assert str(keys.local_store('file:///abs/mlruns')) == '/abs/mlruns'
    assert keys.local_store('https://mlflow.example') is None
    assert keys.local_store('databricks') is None
    assert keys.local_store('sqlite:///:memory:') is None
    assert keys.is_database('sqlite:///m.db')
    assert keys.is_database('postgresql+psycopg2://u@h/db')
    assert not keys.is_database('file:///abs/mlruns')
    assert not keys.is_database('http://host')


def test_run_locations() -> None:
    state = {'tracking_uri': 'http://host:5000/', 'experiment_id': '3', 'run_id': 'ab'}
    assert keys.run_location(state) == 'http://host:5000/#/experiments/3/runs/ab'
    state['tracking_uri'] = 'sqlite:////abs/m.db'
    assert keys.run_location(state) == 'sqlite:////abs/m.db (experiment 3, run ab)'
    assert keys.run_location({}) is None
