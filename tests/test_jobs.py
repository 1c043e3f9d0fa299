"""`skmld fit`'s config: every bad key or value named with its section, before any data is read."""

import pytest

from skmld._jobs import ConfigError, read_config
from skmld.cli import main


def _config(tmp_path, text, data=("micro.nc", "meso.nc")):
    for name in data:
        (tmp_path / name).write_bytes(b"")  # exists; never read while the config is checked
    path = tmp_path / "fit.toml"
    path.write_text(text)
    return path


def test_a_good_config_resolves_paths_from_its_folder(tmp_path):
    path = _config(tmp_path, 'output = "out/model.skmld"\n[micro]\ndata = "micro.nc"\n'
                             'estimator = { horizons = [1, 2], filters = 4 }\n[meso]\ndata = "meso.nc"\n')
    config = read_config(path)
    assert config.output == tmp_path / "out" / "model.skmld"
    assert config.sections["micro"]["data"] == tmp_path / "micro.nc"
    assert set(config.sections) == {"micro", "meso"}


def test_every_problem_is_named_at_once(tmp_path):
    path = _config(tmp_path, """
outptu = "model.skmld"
[micro]
data = "micro.nc"
tokenizer = { patch_sise = 32 }
estimator = { filtres = 4, vae_epochs = -1 }
[meso]
data = "missing.nc"
estimator = { backbone = "x" }
open = { renmae = { T = "temperature" } }
[calibration]
data = "meso.nc"
estimator = { n_draws = "many" }
""")
    with pytest.raises(ConfigError) as info:
        read_config(path)
    message = str(info.value)
    for expected in ("unknown key 'outptu' (did you mean 'output'?)", "missing key 'output'",
                     "[micro].tokenizer: unknown key 'patch_sise' (did you mean 'patch_size'?)",
                     "[micro].estimator: unknown key 'filtres' (did you mean 'filters'?)",
                     "[meso]: data file", "missing.nc' does not exist",
                     "[meso].estimator: 'backbone' is set by `skmld fit` itself",
                     "[meso].open: unknown key 'renmae' (did you mean 'rename'?)",
                     "[calibration].estimator: The 'n_draws' parameter"):
        assert expected in message, (expected, message)


def test_a_bad_value_is_named_with_its_parameter(tmp_path):
    path = _config(tmp_path, 'output = "m.skmld"\n[micro]\ndata = "micro.nc"\nestimator = { vae_epochs = -1 }\n')
    with pytest.raises(ConfigError, match=r"\[micro\].estimator: The 'vae_epochs' parameter"):
        read_config(path)


@pytest.mark.parametrize("text, expected", [
    ('output = "m.skmld"\n', "needs a [micro] section, a [meso] one, or both"),
    ('output = "m.skmld"\n[micro]\ndata = "micro.nc"\n[calibration]\ndata = "meso.nc"\n',
     "[calibration] calibrates the meso model: add a [meso] section"),
    ('output = "m.skmld"\n[micro]\ndata = 3\n', "'data' must name a field file"),
    ('output = "m.skmld"\n[micro\n', "not valid TOML"),
])
def test_structural_problems(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        read_config(_config(tmp_path, text))
    assert expected in str(info.value)


def test_cli_fit_reports_a_bad_config_and_exits_2(tmp_path, capsys):
    path = _config(tmp_path, 'output = "m.skmld"\n[micro]\ndata = "micro.nc"\nestimator = { filtres = 4 }\n')
    assert main(["fit", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("skmld fit: invalid fit config") and "'filtres' (did you mean 'filters'?)" in err
    assert not (tmp_path / "m.skmld").exists()


@pytest.mark.parametrize("argv, expected", [
    (["convert", "a.npy", "b.txt"], "output must end in .nc (NetCDF) or .zarr (Zarr)"),
    (["convert", "a.npy", "b.nc", "--normalised-from", "temperature=300"], "expected FIELD=LO:HI"),
    (["convert", "a.npy", "b.nc", "--rename", "T"], "expected OLD=NEW"),
    (["predict", "m.skmld", "d.nc", "-o", "p.nc", "--coverage", "90"], "expected a level between 0 and 1"),
])
def test_cli_usage_errors_name_the_argument(argv, expected, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and expected in capsys.readouterr().err
