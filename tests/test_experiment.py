"""An experiment's name and the captures it may share with other experiments."""

import pytest
import yaml

from xpipe.errors import InputError
from xpipe.experiment import claim_capture, experiment_name, own_mixes


@pytest.mark.parametrize("config, files, name", [
    ({}, [], "default"),
    ({}, ["config/config.yaml"], "default"),  # the workflow's own file, named explicitly
    ({}, ["config/sweeps/area-sizes.yaml"], "area-sizes"),
    ({}, ["config/sweeps/area-sizes.yaml", "mine/scan-rates.yaml"], "area-sizes+scan-rates"),
    ({"experiment": "paper-fig3"}, ["config/sweeps/area-sizes.yaml"], "paper-fig3"),
])
def test_experiment_is_named_after_its_config_files(config, files, name):
    assert experiment_name(config, files) == name


@pytest.mark.parametrize("bad", ["..", ".hidden", "normalised", "pages", "a/b"])
def test_names_that_would_leave_or_clash_in_results_are_refused(bad):
    with pytest.raises(InputError, match="experiment: a name of letters"):
        experiment_name({"experiment": bad}, [])


def test_a_capture_name_means_one_capture_in_the_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one = {"synthetic": {"seed": 1}}
    claim_capture("syn", one, "a.yaml")
    claim_capture("syn", dict(one), "b.yaml")  # the same definition again: fine
    with pytest.raises(InputError, match=r"c.yaml, captures.syn: another definition of capture 'syn'"):
        claim_capture("syn", {"synthetic": {"seed": 2}}, "c.yaml")
    assert (tmp_path / "results/normalised/syn/definition.yaml").read_text() == "synthetic:\n  seed: 1\n"


def test_a_config_file_with_mixes_replaces_the_default_mixes(tmp_path):
    merged = {"mixes": {"all": {"capture": "servers"}, "pair": {"capture": "servers"},
                        "old": {"capture": "small", "domains": ["a"]}}, "sweep": {}}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({"mixes": {"old": {"capture": "small"}}}))
    (tmp_path / "areas.yaml").write_text(yaml.safe_dump({"sweep": {"area_mib": [1]}}))
    # the merged value is kept (Snakemake's), but only for the mixes the files name
    assert own_mixes(merged, [str(tmp_path / "old.yaml")])["mixes"] == {"old": {"capture": "small",
                                                                                 "domains": ["a"]}}
    assert own_mixes(merged, [str(tmp_path / "areas.yaml")]) == merged  # a sweep keeps the default mixes
    assert own_mixes(merged, []) == merged
    with pytest.raises(InputError, match=r"nope.yaml: config file not found"):
        own_mixes(merged, [str(tmp_path / "nope.yaml")])
