"""The weights manifest: save, find, verify and load by name; corrupt, replaced or missing files are refused."""
from __future__ import annotations

import json

import pytest
import torch

from model import build_model
from workbench.common.errors import WorkbenchError
from workbench.zoo.loader import load
from workbench.zoo.manifest import available_weights, find_weights, read_manifest, save_weights


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    network = build_model("lite_csw_hrnet").eval()
    entry = save_weights(network, "csw_test", run={"data": "unit test", "epochs": 0}, metrics={"val_AP": 0.5}, directory=tmp_path)
    return network, entry, tmp_path


def test_round_trip_through_the_manifest(saved):
    network, entry, folder = saved
    assert read_manifest(folder) == [entry]
    assert available_weights("lite_csw_hrnet", folder) == [entry]
    assert available_weights("lite_hrnet_18", folder) == []
    loaded = load(None, "csw_test", directory=folder)
    assert loaded.name == "lite_csw_hrnet" and loaded.input_size == (256, 192)
    for key, value in network.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(loaded.state_dict()[key], expected), key
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_saving_again_replaces_the_entry(saved):
    network, _, folder = saved
    save_weights(network, "csw_test", run={}, metrics={"val_AP": 0.7}, directory=folder)
    save_weights(build_model("lite_hrnet_18"), "lite18_test", run={}, metrics={}, directory=folder)
    assert [e.name for e in read_manifest(folder)] == ["csw_test", "lite18_test"]
    assert find_weights("csw_test", folder).metrics == {"val_AP": 0.7}


def test_a_replaced_file_is_refused(saved):
    _, entry, folder = saved
    torch.save(build_model("lite_csw_hrnet").state_dict(), folder / entry.file)
    with pytest.raises(WorkbenchError, match="does not match the manifest"):
        load(None, "csw_test", directory=folder)


def test_missing_file_unknown_name_and_malformed_manifest(saved):
    _, entry, folder = saved
    with pytest.raises(WorkbenchError, match=r"no trained weights called 'nope'.*csw_test"):
        load(None, "nope", directory=folder)
    (folder / entry.file).unlink()
    with pytest.raises(WorkbenchError, match="is missing"):
        load(None, "csw_test", directory=folder)
    (folder / "manifest.json").write_text(json.dumps({"weights": [{"name": "x"}]}))
    with pytest.raises(WorkbenchError, match="malformed"):
        read_manifest(folder)


def test_a_manifest_naming_the_wrong_model_is_refused(saved):
    _, entry, folder = saved
    data = json.loads((folder / "manifest.json").read_text())
    data["weights"][0]["model"] = "lite_hrnet_18"
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(WorkbenchError, match="do not fit model 'lite_hrnet_18'"):
        load(None, "csw_test", directory=folder)
    data["weights"][0]["model"] = "lite_csw_hrnet_v9"
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(WorkbenchError, match="names model 'lite_csw_hrnet_v9', which this workbench does not have"):
        load(None, "csw_test", directory=folder)
