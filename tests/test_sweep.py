"""scripts/sweep.py: grid parsing, product order, workdir names, printed commands, --run."""

import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path

import gin
import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(rel: str):
    path = REPO / rel
    spec = importlib.util.spec_from_file_location(f"_{path.stem}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sweep = _load("scripts/sweep.py")


@pytest.mark.parametrize(
    "text, items",
    [
        ("[1, 2]", ["1", "2"]),
        ("[0.5,1e-3, -2 ]", ["0.5", "1e-3", "-2"]),
        ("[1,]", ["1"]),
        ("['a,b', \"c]d\"]", ["'a,b'", '"c]d"']),
        (r"['it\'s', 'x']", [r"'it\'s'", "'x'"]),
        ("[[1, 2], (3, 4), {'k': [5, 6]}]", ["[1, 2]", "(3, 4)", "{'k': [5, 6]}"]),
        ("[True, False, None]", ["True", "False", "None"]),
        ("[@foo, @scope/bar(), %MACRO]", ["@foo", "@scope/bar()", "%MACRO"]),
    ],
)
def test_split_gin_list(text, items):
    assert sweep.split_gin_list(text) == items


@pytest.mark.parametrize(
    "text", ["1, 2", "[]", "[ , ]", "[1,,2]", "['open]", "[1](2)", "[(1]", "[1, 2"]
)
def test_split_gin_list_rejects(text):
    with pytest.raises(ValueError):
        sweep.split_gin_list(text)


def test_parse_grid():
    assert sweep.parse_grid("train/optimizer.lr = [1e-3, 3e-3]") == (
        "train/optimizer.lr",
        ["1e-3", "3e-3"],
    )
    assert sweep.parse_grid("MACRO=['x=y']") == ("MACRO", ["'x=y'"])
    for bad in ["lr", "1bad=[1]", "a b=[1]", "a.b=[1, 1]", "a.b=1"]:
        with pytest.raises(ValueError):
            sweep.parse_grid(bad)


def test_product_size_and_order():
    points = sweep.expand([("a.x", ["1", "2"]), ("b.y", ["'p'", "'q'", "'r'"])])
    assert len(points) == 6
    assert [(p[0][1], p[1][1]) for p in points] == [
        ("1", "'p'"),
        ("1", "'q'"),
        ("1", "'r'"),
        ("2", "'p'"),
        ("2", "'q'"),
        ("2", "'r'"),
    ]
    with pytest.raises(ValueError, match="more than one"):
        sweep.expand([("a.x", ["1"]), ("a.x", ["2"])])


def test_run_names_are_readable_safe_unique_and_stable():
    grids = [
        ("star.temperature", ["0.5", "1.0"]),
        ("train.learning_rate", ["1e-3", "3e-3"]),
    ]
    names = sweep.run_names(sweep.expand(grids))
    assert names == [
        "temperature=0.5,learning_rate=1e-3",
        "temperature=0.5,learning_rate=3e-3",
        "temperature=1.0,learning_rate=1e-3",
        "temperature=1.0,learning_rate=3e-3",
    ]
    # Values that are not safe as-is get a hash, so 'a b' and 'a_b' still differ.
    tricky = ["'a b'", "'a_b'", "'../x'", "@f()", "[1, 2]", "'" + "z" * 300 + "'", "'/'"]
    points = sweep.expand([("policy/train.lr", ["1"]), ("task.name", tricky)])
    names = sweep.run_names(points)
    assert len(set(names)) == len(names) == len(tricky)
    assert all(re.fullmatch(r"[A-Za-z0-9._+=,-]+", n) and len(n) <= 130 for n in names)
    assert names == sweep.run_names(points)
    assert names[0].startswith("lr=1,name=a_b-")
    # Two keys with the same parameter name fall back to the full key.
    clash = sweep.expand([("policy/train.lr", ["1"]), ("verifier/train.lr", ["2"])])
    assert sweep.run_names(clash) == ["policy_train.lr=1,verifier_train.lr=2"]


@gin.configurable("sweep_test")
def _sweep_test(temperature=None, name=None, shape=None, flag=None, fn=None):
    return temperature, name, shape, flag, fn


@gin.configurable("sweep_test_fn")
def _sweep_test_fn():
    return "called"


def test_printed_commands_round_trip_to_argv_and_gin_values(capsys):
    grids = [
        "sweep_test.temperature=[0.5, 1e-3]",
        'sweep_test.name=[\'a b\', "it\'s = \\"q\\" $HOME"]',
        "sweep_test.shape=[[1, (2, 3)]]",
        "sweep_test.flag=[True]",
        "sweep_test.fn=[@sweep_test_fn()]",
    ]
    fixed = "sweep_test.flag = False"
    argv = ["--job=star", "--gin_file=configs/a b.gin", f"--gin_param={fixed}"]
    argv += [f"--grid={g}" for g in grids]
    assert sweep.main([*argv, "--workdir_root=gs://bucket/sw/", "--python=py", "--print"]) == 0
    lines = capsys.readouterr().out.splitlines()
    parsed = [shlex.split(line) for line in lines]
    expected = sweep.sweep_commands(
        "jaxrl_reason.star",
        ["configs/a b.gin"],
        [fixed],
        [sweep.parse_grid(g) for g in grids],
        "gs://bucket/sw",
        python="py",
    )
    assert parsed == [cmd for _, cmd in expected]
    assert len(parsed) == 4
    first = parsed[1]
    assert first[:4] == ["py", "-m", "jaxrl_reason.star", "--gin_file=configs/a b.gin"]
    assert first[-1].startswith("--workdir=gs://bucket/sw/temperature=0.5,name=it_s_q_HOME")
    bindings = [a.removeprefix("--gin_param=") for a in first if a.startswith("--gin_param=")]
    assert bindings[0] == fixed  # fixed first, so grid bindings override them
    gin.clear_config()
    try:
        gin.parse_config(bindings)
        assert _sweep_test() == (0.5, 'it\'s = "q" $HOME', [1, (2, 3)], True, "called")
    finally:
        gin.clear_config()


FAKE_JOB = """
import json, os, sys
workdir = [a for a in sys.argv if a.startswith("--workdir=")][0].split("=", 1)[1]
os.makedirs(workdir, exist_ok=True)
json.dump(sys.argv[1:], open(os.path.join(workdir, "argv.json"), "w"))
print("fake job ran in", workdir)
sys.exit(3 if "--gin_param=fake.fail = True" in sys.argv else 0)
"""


@pytest.fixture
def fake_job(tmp_path, monkeypatch):
    (tmp_path / "fake_job.py").write_text(FAKE_JOB)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return tmp_path / "runs"


def _ran(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/argv.json"))


def test_run_executes_each_point_with_its_workdir(fake_job, capfd):
    grid = ["--grid=fake.x=[1, 2]", "--grid=fake.fail=[False]"]
    argv = ["--module=fake_job", "--gin_param=fake.y = 'z'", *grid, f"--workdir_root={fake_job}"]
    assert sweep.main([*argv, "--run"]) == 0
    assert _ran(fake_job) == ["x=1,fail=False", "x=2,fail=False"]
    recorded = json.loads((fake_job / "x=2,fail=False" / "argv.json").read_text())
    assert recorded == [
        "--gin_param=fake.y = 'z'",
        "--gin_param=fake.x = 2",
        "--gin_param=fake.fail = False",
        f"--workdir={fake_job}/x=2,fail=False",
    ]
    assert "fake job ran in" in capfd.readouterr().out  # the job's output streams through


def test_run_stops_at_first_failure_unless_keep_going(fake_job):
    grid = ["--grid=fake.x=[1, 2]", "--grid=fake.fail=[False, True]"]
    argv = ["--module=fake_job", *grid, f"--workdir_root={fake_job}", "--run"]
    assert sweep.main(argv) == 1
    assert _ran(fake_job) == ["x=1,fail=False", "x=1,fail=True"]
    assert sweep.main([*argv, "--keep_going"]) == 1
    assert len(_ran(fake_job)) == 4


@pytest.mark.parametrize(
    "argv",
    [
        ["--grid=a.b=[1]", "--workdir_root=r", "--print"],  # no --job/--module
        ["--job=star", "--module=m", "--grid=a.b=[1]", "--workdir_root=r", "--print"],
        ["--job=star", "--grid=a.b=[1]", "--workdir_root=r"],  # neither --print nor --run
        ["--job=star", "--grid=a.b=[1]", "--workdir_root=r", "--print", "--run"],
        ["--job=star", "--workdir_root=r", "--print"],  # no --grid
        ["--job=star", "--grid=a.b=[1]", "--print"],  # no --workdir_root
        ["--job=star", "--grid=a.b=1", "--workdir_root=r", "--print"],
        ["--job=../x", "--grid=a.b=[1]", "--workdir_root=r", "--print"],
    ],
)
def test_bad_arguments_exit_with_usage(argv):
    with pytest.raises(SystemExit) as exc:
        sweep.main(argv)
    assert exc.value.code == 2
