import pytest

from edgeswarm.node.config import ConfigError, NodeConfig, load_node_config, load_toml
from edgeswarm.node.subnet.device import DeviceProfile, load_device
from edgeswarm.sim.scenario import Scenario, load_scenario


def test_shipped_node_toml_restates_the_defaults(repo):
    assert load_node_config(repo / "configs/node.toml") == NodeConfig()
    assert load_node_config(None) == NodeConfig()


def test_shipped_node_toml_names_every_key(repo):
    import tomllib

    import msgspec

    shipped = tomllib.loads((repo / "configs/node.toml").read_text())
    for section, value in msgspec.structs.asdict(NodeConfig()).items():
        if isinstance(value, msgspec.Struct):
            missing = set(value.__struct_fields__) - set(shipped.get(section, {})) - {"tasks"}
            assert not missing, f"[{section}] lacks {sorted(missing)}"


@pytest.mark.parametrize("name", ["phone", "laptop", "gateway"])
def test_device_profiles_load(repo, name):
    profile = load_device(repo / f"configs/devices/{name}.toml")
    assert profile.name == name and profile.uplink_bytes_per_s > 0


def test_device_profiles_are_ordered_by_capability(repo):
    phone, laptop, gateway = (load_device(repo / f"configs/devices/{n}.toml") for n in ("phone", "laptop", "gateway"))
    assert phone.compute_speed < laptop.compute_speed < gateway.compute_speed
    assert phone.uplink_mbps < laptop.uplink_mbps < gateway.uplink_mbps


def test_shipped_scenarios_load(repo):
    smoke = load_scenario(repo / "configs/sim/smoke.toml")
    assert smoke.scenario.nodes == 100 and set(smoke.devices) == {"phone", "laptop", "gateway"}
    assert load_scenario(repo / "configs/sim/scale.toml").scenario.nodes == 1000
    assert load_scenario(repo / "configs/sim/smoke.toml", seed=9, nodes=12).scenario.nodes == 12


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[membership]\nview_size = 'big'\n", "key 'membership.view_size': expected int, got str"),
        ("[membership]\nviewsize = 3\n", "unknown key 'membership.viewsize'"),
        ("typo = 1\n", "unknown key 'typo'"),
        ("[membership]\nview_size = 1\n", "key 'membership.view_size': expected int >= 2"),
        ("[store]\npersist_interval = -1.0\n", "key 'store.persist_interval': expected float > 0"),
        ("membership = 3\n", "key 'membership': expected object, got int"),
        ("[membership\n", "not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_expected_type(tmp_path, text, message):
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_missing_file_and_incomplete_profile(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_node_config(tmp_path / "absent.toml")
    path = tmp_path / "dev.toml"
    path.write_text('name = "x"\ncores = 1\n')
    with pytest.raises(ConfigError, match="memory_mb"):
        load_toml(path, DeviceProfile)


def test_scenario_errors_name_the_key(tmp_path, repo):
    text = (repo / "configs/sim/smoke.toml").read_text().replace("loss = 0.01", "loss = 2.0")
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"key 'network.loss': expected float <= 1.0"):
        load_scenario(path)
    path.write_text((repo / "configs/sim/smoke.toml").read_text().replace("phone = 0.6", "watch = 0.6"))
    with pytest.raises(ConfigError, match=r"watch.toml: no such file"):
        load_scenario(path)


def test_every_workload_is_one_scenario_table(tmp_path, repo):
    """The registry names each workload's table, and every workload file is in it; two tables in
    one scenario are refused."""
    from edgeswarm.sim.workload import Workload
    from edgeswarm.sim.workloads import MODULES, WORKLOADS

    files = sorted(path.stem for path in (repo / "sim").glob("*_workload.py"))
    assert sorted(MODULES) == files and len(WORKLOADS) == len(files) >= 5
    assert all(issubclass(kind, Workload) for kind in WORKLOADS.values())
    for name, kind in WORKLOADS.items():
        assert kind.name == name and name in Scenario.__struct_fields__
    text = (
        f"devices_dir = '{repo / 'configs/devices'}'\n" + (repo / "configs/sim/grank.toml").read_text() + "\n[lora]\n"
    )
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="run one workload per scenario .* not grank and lora"):
        load_scenario(path)
