"""Checking the config (xpipe.configcheck): one-line errors, "did you mean", defaults filled."""

import copy
from pathlib import Path

import pytest
import yaml

from xpipe.configcheck import validate_config
from xpipe.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "workflow" / "schemas" / "config.schema.yaml"
BASE_CONFIG = ROOT / "config" / "config.yaml"
SWEEPS = sorted((ROOT / "config" / "sweeps").glob("*.yaml"))

# A small schema shaped like the project's: a required map of objects, a sweep
# object that defaults to {} with defaults of its own, a list of numbers.
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["mixes"],
    "additionalProperties": False,
    "properties": {
        "mixes": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["domains"],
                "additionalProperties": False,
                "properties": {
                    "domains": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "weight": {"type": "number", "default": 1.0},
                },
            },
        },
        "sweep": {
            "type": "object",
            "default": {},
            "additionalProperties": False,
            "properties": {
                "area_mib": {"type": "array", "items": {"type": "number", "minimum": 0}, "default": [1, 4]},
                "admit_zero": {"type": "array", "items": {"type": "boolean"}, "default": [False]},
                "eviction": {"type": "array", "items": {"enum": ["lru", "lfu"]}, "default": ["lru"]},
                "scan": {
                    "type": "object",
                    "default": {},
                    "additionalProperties": False,
                    "properties": {"rate": {"type": "integer", "minimum": 1, "default": 200}},
                },
            },
        },
        "capacity": {"type": "boolean", "default": True},
    },
}


def small_config():
    return {"mixes": {"all": {"domains": ["a", "b"]}}, "sweep": {"area_mib": [1, 2, 3]}}


def error_of(config, schema=SCHEMA, source="config"):
    with pytest.raises(InputError) as info:
        validate_config(config, schema, source)
    message = str(info.value)
    assert "\n" not in message, message
    return info.value


# -- the project's own files ---------------------------------------------------


def deep_merge(base, over):
    """``over`` onto ``base`` key by key, nested dicts too (as snakemake merges --configfile)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(path):
    return yaml.safe_load(Path(path).read_text())


def defaults_present(config, schema):
    """Every property with a default is in the config, in every object it reaches."""
    if not isinstance(config, dict) or not isinstance(schema, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if "default" in sub:
            assert key in config, key
        if key in config:
            defaults_present(config[key], sub)


@pytest.mark.parametrize("sweep", [None, *SWEEPS], ids=lambda p: p.name if p else "config.yaml")
def test_the_project_config_and_every_sweep_over_it_pass(sweep):
    schema = load(SCHEMA_FILE)
    config = load(BASE_CONFIG)
    if sweep is not None:
        config = deep_merge(config, load(sweep))
    given = copy.deepcopy(config)
    out = validate_config(config, schema, str(sweep or BASE_CONFIG))
    assert out is config
    defaults_present(out, schema)
    for key, value in given.items():  # what the file gives is kept as it is
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                assert out[key][sub] == subvalue
        else:
            assert out[key] == value


def test_the_project_schema_names_a_misspelled_key_in_a_mix():
    config = load(BASE_CONFIG)
    mix = next(iter(config["mixes"]))
    config["mixes"][mix]["domian"] = ["x"]
    error = error_of(config, load(SCHEMA_FILE), "config/config.yaml")
    assert error.path == "config/config.yaml"
    assert error.where == f"mixes.{mix}.domian"
    assert "unknown key; did you mean 'domains'?" in error.expected


def test_the_project_schema_suggests_the_closest_key_of_each_object():
    schema = load(SCHEMA_FILE)
    for section, sub in schema["properties"].items():
        if not sub.get("properties") or sub.get("additionalProperties") is not False:
            continue
        for key in sub["properties"]:
            config = load(BASE_CONFIG)
            config.setdefault(section, {})
            typo = key[:-1]  # the last letter dropped
            config[section][typo] = config[section].pop(key, None) or sub["properties"][key].get("default")
            error = error_of(config, schema)
            assert error.where == f"{section}.{typo}"
            assert f"did you mean {key!r}?" in error.expected


# -- unknown keys --------------------------------------------------------------


def test_a_misspelled_key_is_one_line_with_did_you_mean():
    config = small_config()
    config["sweep"]["are_mib"] = config["sweep"].pop("area_mib")
    error = error_of(config)
    assert str(error) == (
        "config, sweep.are_mib: unknown key; did you mean 'area_mib'? "
        "(known: admit_zero, area_mib, eviction, scan)"
    )


def test_an_unknown_top_level_key():
    config = small_config()
    config["capacty"] = False
    error = error_of(config, source="a.yaml")
    assert str(error).startswith("a.yaml, capacty: unknown key; did you mean 'capacity'?")


def test_an_unknown_key_with_nothing_close_lists_the_known_ones():
    config = small_config()
    config["zzz"] = 1
    assert str(error_of(config)) == "config, zzz: unknown key (known: capacity, mixes, sweep)"


def test_an_unknown_key_inside_a_map_value():
    config = small_config()
    config["mixes"]["all"]["domian"] = ["c"]
    error = error_of(config)
    assert error.where == "mixes.all.domian"
    assert "did you mean 'domains'?" in error.expected


def test_an_unknown_key_in_a_nested_object_reached_through_a_default():
    config = small_config()
    config["sweep"]["scan"] = {"rtae": 5}
    error = error_of(config)
    assert error.where == "sweep.scan.rtae"
    assert "did you mean 'rate'?" in error.expected


def test_an_unknown_key_inside_list_items():
    schema = {
        "type": "object",
        "properties": {
            "hosts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"name": {}, "mib": {}},
                },
            }
        },
    }
    error = error_of({"hosts": [{"name": "a"}, {"name": "b", "mbi": 3}]}, schema)
    assert error.where == "hosts[1].mbi"
    assert "did you mean 'mib'?" in error.expected


def test_oneof_alternatives_sharing_properties_are_checked_for_unknown_keys():
    shared = {"path": {"type": "string"}, "size": {"type": "integer"}}
    schema = {
        "type": "object",
        "properties": {
            "disk": {
                "oneOf": [
                    {"properties": shared, "additionalProperties": False, "required": ["path"]},
                    {"properties": shared, "additionalProperties": False, "required": ["size"]},
                ]
            }
        },
    }
    error = error_of({"disk": {"path": "x", "szie": 3}}, schema)
    assert error.where == "disk.szie"
    assert "did you mean 'size'?" in error.expected


def test_oneof_of_required_keys_says_which_keys():
    schema = {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "oneOf": [{"required": ["manifest"]}, {"required": ["record"]}],
            "properties": {"manifest": {"type": "string"}, "record": {"type": "string"}},
        },
    }
    error = error_of({"cap": {}}, schema)
    assert str(error) == "config, cap: {} needs exactly one of the keys 'manifest', 'record'"
    error = error_of({"cap": {"manifest": "m", "record": "r"}}, schema)
    assert error.where == "cap"
    assert "needs exactly one of the keys 'manifest', 'record'" in error.expected


# -- other schema errors -------------------------------------------------------


def test_a_wrong_type():
    config = small_config()
    config["capacity"] = "yes"
    assert str(error_of(config)) == "config, capacity: 'yes' is not of type 'boolean'"


def test_a_wrong_type_in_a_list_names_the_index():
    config = small_config()
    config["mixes"]["all"]["domains"] = ["a", 7]
    assert str(error_of(config)) == "config, mixes.all.domains[1]: 7 is not of type 'string'"


def test_a_value_below_the_minimum():
    config = small_config()
    config["sweep"]["area_mib"] = [1, 4, -1]
    assert str(error_of(config)) == "config, sweep.area_mib[2]: -1 is less than the minimum of 0"


def test_a_missing_required_key_is_named():
    config = small_config()
    del config["mixes"]
    assert str(error_of(config)) == "config, mixes: required key is missing"


def test_a_value_not_in_the_enum():
    config = small_config()
    config["sweep"]["eviction"] = ["lru", "fifo"]
    error = error_of(config)
    assert error.where == "sweep.eviction[1]"
    assert error.expected == "'fifo' is not one of ['lru', 'lfu']"


def test_a_long_offending_value_is_cut_to_80_characters():
    config = small_config()
    config["capacity"] = list(range(200))
    error = error_of(config)
    assert error.where == "capacity"
    value = repr(list(range(200)))[:77] + "..."
    assert error.expected == f"{value} is not of type 'boolean'"
    assert len(str(error)) < 160


def test_a_key_that_is_not_an_identifier_is_quoted_in_the_path():
    config = small_config()
    config["mixes"]["two words"] = {"domains": []}
    error = error_of(config)
    assert error.where == "mixes['two words'].domains"


# -- numbers must be finite ----------------------------------------------------


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", ".NaN", ".Inf"])
def test_nan_and_infinities_from_yaml_are_refused(text):
    config = yaml.safe_load(
        f"mixes: {{all: {{domains: [a], weight: {text}}}}}\nsweep: {{area_mib: [1, {text}]}}\n"
    )
    error = error_of(config)
    assert error.where == "mixes.all.weight"
    assert error.expected.endswith("is not a finite number")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinities_are_refused_in_lists_too(value):
    config = small_config()
    config["sweep"]["area_mib"] = [1, value]
    error = error_of(config)
    assert error.where == "sweep.area_mib[1]"
    assert error.expected == f"{value!r} is not a finite number"


def test_nan_is_refused_even_where_the_schema_says_nothing():
    schema = {"type": "object"}
    error = error_of({"free": {"form": [0.5, float("nan")]}}, schema)
    assert error.where == "free.form[1]"


# -- defaults ------------------------------------------------------------------


def test_defaults_are_filled_including_nested_ones():
    config = {"mixes": {"all": {"domains": ["a"]}, "two": {"domains": ["b"], "weight": 2.5}}}
    out = validate_config(config, SCHEMA)
    assert out is config
    assert out == {
        "mixes": {"all": {"domains": ["a"], "weight": 1.0}, "two": {"domains": ["b"], "weight": 2.5}},
        "sweep": {"area_mib": [1, 4], "admit_zero": [False], "eviction": ["lru"], "scan": {"rate": 200}},
        "capacity": True,
    }


def test_defaults_fill_an_object_given_in_part():
    config = small_config()
    config["sweep"]["scan"] = {}
    out = validate_config(config, SCHEMA)
    assert out["sweep"] == {
        "area_mib": [1, 2, 3],
        "admit_zero": [False],
        "eviction": ["lru"],
        "scan": {"rate": 200},
    }


def test_defaults_are_copies_not_the_schema_itself():
    schema = copy.deepcopy(SCHEMA)
    first = validate_config(small_config(), schema)
    first["sweep"]["admit_zero"].append(True)
    first["sweep"]["scan"]["rate"] = 1
    assert schema == SCHEMA
    second = validate_config(small_config(), schema)
    assert second["sweep"]["admit_zero"] == [False]
    assert second["sweep"]["scan"] == {"rate": 200}


def test_a_valid_config_is_returned_unchanged_except_defaults():
    config = {
        "mixes": {"all": {"domains": ["a", "b"], "weight": 0.5}},
        "sweep": {"area_mib": [0, 2.5], "admit_zero": [True], "eviction": ["lfu"], "scan": {"rate": 7}},
        "capacity": False,
    }
    given = copy.deepcopy(config)
    out = validate_config(config, SCHEMA)
    assert out is config
    assert out == given  # every default was given already: nothing added, nothing changed


def test_defaults_in_a_local_ref_are_filled():
    schema = {
        "$defs": {"limits": {"type": "object", "properties": {"cores": {"type": "integer", "default": 2}}}},
        "type": "object",
        "properties": {"limits": {"$ref": "#/$defs/limits", "default": {}}},
    }
    assert validate_config({}, schema) == {"limits": {"cores": 2}}
