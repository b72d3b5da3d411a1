"""The one list / KEY=VALUE parser (semcorr.parsing)."""

import pytest

from semcorr.errors import UsageError
from semcorr.parsing import parse_float_list, parse_int_list, parse_key_values, parse_name_list, split_items


def test_split_items_accepts_commas_semicolons_and_blanks():
    assert split_items(" a, b;c,, ;") == ["a", "b", "c"]
    assert split_items("") == []


def test_lists_from_text_scalars_and_sequences():
    assert parse_int_list("5;5,3", "k") == [5, 5, 3]
    assert parse_int_list(7, "k") == [7]
    assert parse_int_list([1, "2"], "k") == [1, 2]
    assert parse_float_list("0.05, 0.1", "alpha") == [0.05, 0.1]
    assert parse_name_list("features.6,features.10") == ["features.6", "features.10"]
    assert parse_int_list(None, "k") == []


def test_bad_item_names_the_parameter():
    with pytest.raises(UsageError, match="ncons_kernel_sizes must be a list of integers"):
        parse_int_list("3,x", "ncons_kernel_sizes")
    with pytest.raises(UsageError, match="alpha must be a list of numbers"):
        parse_float_list("0.1,a", "alpha")


def test_key_values_plain_and_json():
    assert parse_key_values(["layout=small ", "lists-dir=D"], "option", dash_to_underscore=True) == {"layout": "small", "lists_dir": "D"}
    got = parse_key_values(["n=3", "flag=true", "ks=[3,3]", "name=abc", "f=features.6,features.10"], "model_opt", json_values=True)
    assert got == {"n": 3, "flag": True, "ks": [3, 3], "name": "abc", "f": "features.6,features.10"}
    with pytest.raises(UsageError, match="model_opt takes KEY=VALUE"):
        parse_key_values(["novalue"], "model_opt")
    with pytest.raises(UsageError):
        parse_key_values(["=v"], "model_opt")
