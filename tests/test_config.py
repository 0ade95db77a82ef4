"""config.py: defaults <- YAML <- dotted overrides; every bad field or combination is a ConfigError that names it."""
from pathlib import Path

import pytest

from rewardflow.algos import ADVANTAGES, POLICY_LOSSES
from rewardflow.config import Config
from rewardflow.recipes.config_loader import ConfigError, load_config, to_dict

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_TASK_KWARGS = {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1}


def yaml_file(tmp_path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults():
    cfg = load_config()
    assert to_dict(cfg) == to_dict(Config())
    assert (cfg.algo.name, cfg.algo.loss, cfg.data.task, cfg.eval.ks, cfg.eval.n_samples) == ("grpo", "clip", "chain_sum", [1, 2, 4, 8], 8)
    assert cfg.data.task_kwargs == DEFAULT_TASK_KWARGS
    assert ConfigError.__mro__[1] is ValueError


def test_dotted_overrides_are_typed():
    cfg = load_config(overrides=["trainer.steps=7", "rollout.temperature=1", "algo.name=rloo", "eval.greedy=false", "model.path=/ckpt"])
    assert cfg.trainer.steps == 7 and isinstance(cfg.trainer.steps, int)
    assert cfg.rollout.temperature == 1.0 and isinstance(cfg.rollout.temperature, float)
    assert (cfg.algo.name, cfg.eval.greedy, cfg.model.path) == ("rloo", False, "/ckpt")
    assert cfg.trainer.lr == Config().trainer.lr  # untouched fields keep their defaults


@pytest.mark.parametrize(
    "override, field",
    [
        ("algo.nme=rloo", "algo.nme"),
        ("trainer.stpes=3", "trainer.stpes"),
        ("nosuch.x=1", "nosuch"),
    ],
)
def test_unknown_field_is_named(override, field):
    with pytest.raises(ConfigError, match=f"field: {field}\\)"):
        load_config(overrides=[override])


@pytest.mark.parametrize(
    "override, field",
    [
        ("trainer.steps=abc", "trainer.steps"),
        ("trainer.steps=1.5", "trainer.steps"),  # no silent truncation to 1
        ("algo.kl_coef=abc", "algo.kl_coef"),
        ("eval.greedy=maybe", "eval.greedy"),
        ("data.task_kwargs=null", "data.task_kwargs"),
    ],
)
def test_wrong_type_is_named(override, field):
    with pytest.raises(ConfigError, match=f"field: {field}\\)"):
        load_config(overrides=[override])


def test_invalid_choice_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="algo.name='foo'") as info:
        load_config(overrides=["algo.name=foo"])
    assert all(name in str(info.value) for name in ADVANTAGES)
    with pytest.raises(ConfigError, match="algo.loss='ppo'") as info:
        load_config(overrides=["algo.loss=ppo"])
    assert all(name in str(info.value) for name in POLICY_LOSSES)
    for override, field in [("model.dtype=float64", "model.dtype"), ("algo.agg=sum", "algo.agg"), ("algo.scale=max", "algo.scale"),
                            ("algo.kl_estimator=k4", "algo.kl_estimator"), ("trainer.lr_schedule=step", "trainer.lr_schedule")]:
        with pytest.raises(ConfigError, match=field):
            load_config(overrides=[override])


def test_every_registered_estimator_and_loss_is_accepted():
    for name in ADVANTAGES:
        assert load_config(overrides=[f"algo.name={name}"]).algo.name == name
    for name in POLICY_LOSSES:
        assert load_config(overrides=[f"algo.loss={name}"]).algo.loss == name


def test_ks_must_not_exceed_n_samples():
    with pytest.raises(ConfigError, match=r"eval\.ks=\[1, 16\].*eval\.n_samples=8"):
        load_config(overrides=["eval.ks=[1,16]"])
    with pytest.raises(ConfigError, match="eval.ks"):
        load_config(overrides=["eval.n_samples=4"])  # default ks go up to 8
    assert load_config(overrides=["eval.ks=[1,8]"]).eval.ks == [1, 8]  # k = n is fine
    assert load_config(overrides=["eval.n_samples=16", "eval.ks=[1,16]"]).eval.ks == [1, 16]


def test_empty_ks_is_a_config_error():
    with pytest.raises(ConfigError, match="eval.ks"):
        load_config(overrides=["eval.ks=[]"])


def test_non_positive_k_is_a_config_error():
    with pytest.raises(ConfigError, match="eval.ks"):
        load_config(overrides=["eval.ks=[0,1]"])


def test_group_baselines_need_two_samples():
    for name in ("grpo", "rloo"):
        with pytest.raises(ConfigError, match=f"rollout.group_size=1: {name}"):
            load_config(overrides=[f"algo.name={name}", "rollout.group_size=1"])
    assert load_config(overrides=["algo.name=remax", "rollout.group_size=1"]).rollout.group_size == 1


@pytest.mark.parametrize("field", ["trainer.steps", "trainer.micro_batch_size", "algo.epochs"])
def test_counts_must_be_positive(field):
    with pytest.raises(ConfigError, match=f"{field}=0 must be >= 1"):
        load_config(overrides=[f"{field}=0"])


def test_clip_ranges_must_be_non_negative():
    for field in ("algo.eps_low", "algo.eps_high"):
        with pytest.raises(ConfigError, match=rf"{field}=-0.1 must be"):
            load_config(overrides=[f"{field}=-0.1"])
    assert load_config(overrides=["algo.eps_low=0", "algo.eps_high=0.28"]).algo.eps_high == 0.28


def test_dist_settings_are_checked(monkeypatch):
    assert load_config().dist.rollout_workers == 0  # in-process rollouts, no Ray, unless asked
    with pytest.raises(ConfigError, match="dist.rollout_workers=-1 must be >= 0"):
        load_config(overrides=["dist.rollout_workers=-1"])
    with pytest.raises(ConfigError, match="dist.worker_cpus=0.0 must be > 0"):
        load_config(overrides=["dist.worker_cpus=0"])
    assert load_config(overrides=["dist.rollout_workers=2", "dist.worker_gpus=0.5"]).dist.worker_gpus == 0.5
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched by torchrun: ranks split generation, a Ray fleet per rank is an error
    with pytest.raises(ConfigError, match="dist.rollout_workers=2 cannot be combined with torchrun"):
        load_config(overrides=["dist.rollout_workers=2"])
    assert load_config().dist.rollout_workers == 0


PRM = ["reward.scorers=[runs/prm]", "reward.weights=[0.5]"]


def test_reward_section_defaults_and_overrides():
    rw = load_config().reward
    assert (rw.scorers, rw.weights, rw.verifier_weight, rw.aggregation, rw.shaping, rw.transform, rw.online_update) == ([], [], 1.0, "min", "none", "none", False)
    rw = load_config(overrides=PRM + ["reward.aggregation=outcome", "reward.transform=logsigmoid", "reward.transform_quantile=0.85",
                                      "reward.verifier_weight=0", "reward.online_update=true"]).reward
    assert (rw.scorers, rw.weights, rw.aggregation, rw.transform_quantile, rw.verifier_weight) == (["runs/prm"], [0.5], "outcome", 0.85, 0.0)
    rw = load_config(overrides=PRM + ["algo.dense.coef=0.5", "reward.shaping=clip", "reward.clip_eta=0.3"]).reward
    assert (rw.shaping, rw.clip_eta) == ("clip", 0.3)


@pytest.mark.parametrize("overrides, message", [
    (["reward.aggregation=max"], r"reward.aggregation='max' is not valid; choose one of: geo_mean, last, mean, min, outcome, prod"),
    (PRM + ["algo.dense.coef=0.5", "reward.shaping=clipdelta"], r"reward.shaping='clipdelta' is not valid; choose one of: clip, delta, none"),
    (["reward.transform=exp"], r"reward.transform='exp' is not valid; choose one of: logsigmoid, none"),
    (["reward.scorers=[a,b]", "reward.weights=[1.0]"], r"reward.weights=\[1.0\] needs one weight per entry of reward.scorers=\['a', 'b'\]"),
    (["reward.weights=[1.0]"], r"reward.weights=\[1.0\] needs one weight per entry of reward.scorers=\[\]"),
    (PRM + ["reward.transform_quantile=1.5"], r"reward.transform_quantile=1.5 must be in \[0, 1\]"),
    (["reward.transform=logsigmoid"], r"reward.transform='logsigmoid' acts on learned scorers, but reward.scorers is empty"),
    (["reward.online_update=true"], r"reward.online_update=True acts on learned scorers, but reward.scorers is empty"),
    (["algo.dense.coef=0.5", "reward.shaping=delta"], r"reward.shaping='delta' acts on learned scorers, but reward.scorers is empty"),
    (PRM + ["reward.shaping=delta"], r"reward.shaping='delta' shapes the dense per-step rewards, which need algo.dense.coef > 0"),
    (PRM + ["algo.name=remax"], r"algo.name='remax' scores its greedy baseline with the verifier alone"),
    (["reward.weights=[x]"], r"field: reward.weights"),
    (["reward.scorer=[a]"], r"field: reward.scorer\)"),
])
def test_reward_section_errors_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


# ----------------------------------------------------------------------------- YAML layering


def test_yaml_layer_then_overrides(tmp_path):
    path = yaml_file(tmp_path, "algo:\n  name: rloo\ntrainer:\n  steps: 5\n  lr: 1.0e-3\n")
    cfg = load_config(path)
    assert (cfg.algo.name, cfg.trainer.steps, cfg.trainer.lr) == ("rloo", 5, 1e-3)
    assert cfg.trainer.max_grad_norm == 1.0 and cfg.data.task_kwargs == DEFAULT_TASK_KWARGS  # defaults below the file
    cfg = load_config(path, ["trainer.steps=7"])  # the command line wins over the file
    assert (cfg.algo.name, cfg.trainer.steps, cfg.trainer.lr) == ("rloo", 7, 1e-3)


def test_yaml_errors_name_the_file_and_the_field(tmp_path):
    path = yaml_file(tmp_path, "algo:\n  name: rloo\n  nme: x\n")
    with pytest.raises(ConfigError, match=f"in {path}.*field: algo.nme"):
        load_config(path)
    path = yaml_file(tmp_path, "trainer:\n  steps: abc\n", "typed.yaml")
    with pytest.raises(ConfigError, match=f"in {path}.*field: trainer.steps"):
        load_config(path)
    path = yaml_file(tmp_path, "algo:\n  name: foo\n", "choice.yaml")
    with pytest.raises(ConfigError, match="algo.name='foo'"):
        load_config(path)


def test_missing_yaml_file(tmp_path):
    with pytest.raises((FileNotFoundError, ConfigError)):
        load_config(tmp_path / "absent.yaml")


def test_switching_task_without_kwargs_drops_the_default_task_options(tmp_path):
    assert load_config(overrides=["data.task=basic_arithmetic"]).data.task_kwargs == {}
    path = yaml_file(tmp_path, "data:\n  task: basic_arithmetic\n")
    assert load_config(path).data.task_kwargs == {}
    # the file's task (with its options) is switched again on the command line: the file's options go too
    path = yaml_file(tmp_path, "data:\n  task: basic_arithmetic\n  task_kwargs: {min_terms: 2, max_terms: 2}\n", "b.yaml")
    assert load_config(path, ["data.task=leg_counting"]).data.task_kwargs == {}
    # without switching task, one option is overridden and the others stay
    kwargs = load_config(overrides=["data.task_kwargs.min_terms=2"]).data.task_kwargs
    assert kwargs == {**DEFAULT_TASK_KWARGS, "min_terms": 2}
    # a layer giving a task together with options: its options win
    assert load_config(path).data.task_kwargs["min_terms"] == 2


def test_switching_task_with_some_kwargs_does_not_inherit_the_rest(tmp_path):
    path = yaml_file(tmp_path, "data:\n  task: basic_arithmetic\n  task_kwargs: {min_terms: 2}\n")
    assert load_config(path).data.task_kwargs == {"min_terms": 2}
    assert load_config(overrides=["data.task=basic_arithmetic", "data.task_kwargs.min_terms=2"]).data.task_kwargs == {"min_terms": 2}


def test_shipped_recipes_load():
    recipes = sorted(CONFIGS.glob("*.yaml"))
    assert {p.name for p in recipes} >= {"quickstart.yaml", "grpo_chain_sum.yaml"}
    for path in recipes:
        load_config(path)
    # quickstart.yaml says every field in it equals the built-in default
    assert to_dict(load_config(CONFIGS / "quickstart.yaml")) == to_dict(load_config())
    grpo = load_config(CONFIGS / "grpo_chain_sum.yaml")
    assert (grpo.algo.kl_coef, grpo.algo.eps_high, grpo.algo.epochs, grpo.trainer.lr_schedule) == (0.02, 0.28, 2, "cosine")
    prm = load_config(CONFIGS / "grpo_prm_delta.yaml", ["reward.scorers=[/ckpt/my prm]"])  # the PRM directory from the command line
    assert (prm.reward.scorers, prm.reward.weights, prm.reward.shaping, prm.algo.dense.coef) == (["/ckpt/my prm"], [0.0], "delta", 0.5)


def test_to_dict_round_trips_through_yaml(tmp_path):
    from omegaconf import OmegaConf

    cfg = load_config(overrides=["algo.name=rloo", "data.task=basic_arithmetic", "data.task_kwargs={min_terms: 2}", "eval.ks=[1,2]"])
    path = tmp_path / "dump.yaml"
    OmegaConf.save(OmegaConf.create(to_dict(cfg)), path)
    assert to_dict(load_config(path)) == to_dict(cfg)


@pytest.mark.parametrize("override, message", [
    ("rollout.prompts_per_step=0", "rollout.prompts_per_step=0 must be >= 1"),
    ("rollout.group_size=-2", "rollout.group_size=-2 must be >= 1"),
    ("rollout.temperature=0", "rollout.temperature=0.0 must be > 0"),
    ("rollout.top_p=2", r"rollout.top_p=2.0 must be in \(0, 1\]"),
    ("algo.eps_low=5", r"algo.eps_low=5.0 must be in \[0, 1\)"),
    ("trainer.warmup_steps=-10", "trainer.warmup_steps=-10 must be >= 0"),
    ("trainer.max_grad_norm=-1", "trainer.max_grad_norm=-1.0 must be > 0"),
    ("trainer.max_grad_norm=nan", "trainer.max_grad_norm=nan must be a finite number"),
    ("algo.kl_coef=nan", "algo.kl_coef=nan must be a finite number"),
    ("algo.kl_coef=-1", "algo.kl_coef=-1.0 must be >= 0"),
    ("trainer.save_every=-1", "trainer.save_every=-1 must be >= 0"),
    ("model.layers=0", "model.layers=0 must be >= 1"),
    ("model.device=banana", "model.device='banana' is not a torch device"),
    ("sft.batch_size=0", "sft.batch_size=0 must be >= 1"),
    ("data.task=train.jsonl", "set data.eval_path"),
    ("rollout.group_size=1", "needs >= 2 samples per prompt"),
    ("algo.name=prime", "reads an implicit PRM from reward.scorers"),
])
def test_every_range_is_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_a_name_implies_its_papers_settings_and_overrides_still_win():
    from rewardflow.train.algorithms import PRESETS

    dapo = load_config(overrides=["algo.name=dapo"]).algo
    assert (dapo.dapo.dynamic_sampling, dapo.eps_high, dapo.dapo.overlong_cache, dapo.agg) == (True, 0.28, 16, "token-mean")
    assert load_config(overrides=["algo.name=dr_grpo"]).algo.agg == "seq-mean-token-sum"
    gspo = load_config(overrides=["algo.name=gspo"]).algo
    assert (gspo.loss, gspo.agg, gspo.eps_low, gspo.eps_high) == ("gspo", "seq-mean-token-mean", 3e-4, 4e-4)
    assert load_config(overrides=["algo.name=gspo", "algo.eps_high=5e-4"]).algo.eps_high == 5e-4  # the user's override wins
    assert load_config(overrides=["algo.name=grpo"]).algo.agg == "token-mean"  # no preset: the defaults
    for name in PRESETS:  # every named method loads
        assert load_config(overrides=[f"algo.name={name}"]).algo.name == name


@pytest.mark.parametrize("content, message", [
    ("", "empty or not a mapping"),
    ("algo:\n\tname: grpo\n", "not valid YAML"),
    ("algo: [unclosed\n", "not valid YAML"),
])
def test_bad_yaml_is_a_one_line_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
