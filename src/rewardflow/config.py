"""Typed configuration: dataclasses only, one field per line with its documentation in the trailing comment.
Defaults are the quickstart recipe. Loading (YAML <- dotted overrides) and validation live with the recipes
(recipes/config_loader.py), which are the only code that reads a config from outside."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any



@dataclass
class LoRAConfig:
    rank: int = 0  # LoRA rank r of the low-rank update B @ A (Hu et al. 2021); 0 trains every weight (no LoRA)
    alpha: float = 16.0  # LoRA scale numerator: the update is (alpha / rank) * B @ A
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])  # module names that get adapters
    dropout: float = 0.0  # dropout on the adapter's input


@dataclass
class ModelConfig:
    path: str | None = None  # a local transformers checkpoint; None builds the tiny model below
    hidden_size: int = 128  # tiny model: residual width
    layers: int = 4  # tiny model: transformer blocks
    heads: int = 4  # tiny model: attention heads
    intermediate_size: int = 512  # tiny model: MLP width
    max_positions: int = 512  # tiny model: longest prompt + completion
    device: str = "cpu"  # torch device for the policy
    backend: str = "hf"  # the engine that generates (policy/backends.BACKENDS): hf (transformers, any device) | vllm (the vllm extra, GPU)
    dtype: str = "float32"  # compute dtype: bfloat16/float16 run forwards under autocast; weights and AdamW state stay float32
    gradient_checkpointing: bool = False  # recompute each block's activations in the backward pass (less memory, ~1/3 more compute)
    compile_decode: bool = False  # hf backend: the sampler's decode step through torch.compile (faster up to 64 rows; its first call compiles, 2-25 s)
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # low-rank adapters (rank 0: off)


@dataclass
class DataConfig:
    task: str = "chain_sum"  # a reasoning-gym task name, or a problem file: .jsonl (GSM8K / MATH-500 format), .json, .csv, .parquet
    task_kwargs: dict[str, Any] = field(default_factory=lambda: {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1})  # reasoning-gym task options
    eval_size: int = 200  # held-out problems (reasoning-gym) or rows used from the eval file
    eval_path: str | None = None  # a problem file (.jsonl/.json/.csv/.parquet) for eval instead of the reasoning-gym eval split
    prompt_key: str | None = None  # the question field of data files (None: 'question' or 'problem', detected)
    answer_key: str | None = None  # the gold-answer field of data files (None: 'answer' or 'gt', detected)
    split: str = "train"  # split of a `datasets` source (data.task=hf:NAME[:CONFIG]) that training reads
    eval_split: str = "test"  # split of a `datasets` eval source (data.eval_path=hf:NAME[:CONFIG])
    system_prompt: str | None = None  # text put before every prompt (train and eval), a blank line between
    template: str | None = None  # prompt template with '{prompt}' where the question goes, e.g. "Q: {prompt}\nA:"
    mix: list[str] = field(default_factory=list)  # several training sources (files, hf:NAME, reasoning-gym tasks) mixed by mix_weights; replaces data.task for training
    mix_weights: list[float] = field(default_factory=list)  # one per data.mix source: its share of training problems (normalised)


@dataclass
class SFTConfig:
    steps: int = 400  # optimiser steps of supervised warm-start on worked solutions
    batch_size: int = 32  # examples per step
    lr: float = 3e-3  # peak learning rate
    warmup_steps: int = 20  # linear warm-up
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    direct_frac: float = 0.0  # share of warm-start examples that state the answer without steps (see README)
    data: str | None = None  # SFT rows (.jsonl/.json/.csv/.parquet, hf:NAME): prompt/completion or messages; None: worked solutions of data.task
    prompt_key: str = "prompt"  # sft.data: the prompt field (a string, or a list of {role, content} messages)
    completion_key: str = "completion"  # sft.data: the completion field; rows with only 'messages' take the last assistant turn
    pack: bool = False  # pack several examples into each row up to model.max_positions tokens (loss still on completions only)


@dataclass
class RolloutConfig:
    prompts_per_step: int = 32  # B: prompts sampled per RL step
    group_size: int = 8  # G: completions per prompt
    temperature: float = 1.0  # sampling temperature (the ratio uses logprobs at this temperature)
    top_p: float = 1.0  # nucleus sampling
    top_k: int = 0  # 0 disables
    max_new_tokens: int = 64  # completion budget per sample


@dataclass
class DAPOConfig:
    dynamic_sampling: bool = False  # DAPO: drop groups whose samples are all right or all wrong, refill with new prompts
    max_rounds: int = 3  # DAPO: at most this many extra sampling rounds per step to refill the batch
    overlong_cache: int = 0  # DAPO soft overlong punishment: L_cache tokens before rollout.max_new_tokens (0: off)
    overlong_filter: bool = False  # DAPO overlong filtering: truncated samples get no loss


@dataclass
class D3SConfig:
    mode: str = "none"  # D3S down-sampling (Wang et al. 2025): none | sample | token | both
    start: float = 0.25  # keep ratio at step 0 (aggressive early)
    end: float = 1.0  # keep ratio at the last step (relaxed)
    schedule: str = "linear"  # schedule of the keep ratio: linear | cosine
    scope: str = "batch"  # sample-level subsets: batch (across groups, the paper's main method) | group (within each group, D3S-I)


@dataclass
class PPOConfig:
    critic: str = "head"  # value head on the policy backbone (head) or a separate value model (model)
    critic_lr: float = 1e-3  # learning rate of the value head / value model
    vf_coef: float = 0.5  # weight of the clipped value loss
    value_clip: float = 0.2  # clip range of the value loss
    gamma: float = 1.0  # GAE discount
    lam: float = 0.95  # GAE lambda


@dataclass
class RAFTConfig:
    keep: str = "correct"  # raft / raft_pp: keep every correct sample (correct) or each prompt's best (best)


@dataclass
class ROVERConfig:
    rho: float = 1.0  # temperature rho of Q = rho * log(pi / pi_old)


@dataclass
class DenseConfig:
    coef: float = 0.0  # weight of dense per-step advantages (Rollout.step_rewards, e.g. PRM steps); 0: off
    mode: str = "return"  # how step rewards become token advantages (algos.DENSE_MODES): return | step | process (DeepSeekMath: normalised over the group)


@dataclass
class AlgoConfig:
    name: str = "grpo"  # the method (train/algorithms.ALGORITHMS): an estimator of algos.ADVANTAGES, a named method of PRESETS (its paper's settings), ppo, raft, ...
    scale: str = "group"  # GRPO std scaling: group | batch | none
    loss: str = "clip"  # policy loss (algos.POLICY_LOSSES)
    eps_low: float = 0.2  # lower clip range
    eps_high: float = 0.2  # upper clip range (DAPO clip-higher: > eps_low)
    agg: str = "token-mean"  # token-mean (DAPO's; the default) | seq-mean-token-mean (the GRPO paper's, GSPO) | seq-mean-token-sum (Dr.GRPO: / N * L_max)
    kl_coef: float = 0.0  # weight of KL(pi || pi_ref) in the loss; 0 skips the reference model
    kl_estimator: str = "k3"  # k1 | k2 | k3
    epochs: int = 1  # optimisation passes over each rollout batch (against the old logprobs)
    kl_mode: str = "loss"  # loss: kl_coef * KL added to the loss | reward: -kl_coef * KL_t folded into token rewards (REINFORCE++)
    kl_placement: str = "after"  # kl_mode=reward, outcome estimators: after (-beta * KL return-to-go added to the advantage) | before (verl: r - beta * sum_t KL_t enters the estimator)
    entropy_coef: float = 0.0  # entropy bonus weight (PPO eq. 9); > 0 needs full logits in the forward pass
    tis_cap: float = 0.0  # truncated importance sampling: clip against the trainer's recomputed logprobs, weight tokens by min(pi_prox/pi_behav, tis_cap); 0: off
    dapo: DAPOConfig = field(default_factory=DAPOConfig)  # DAPO's dynamic sampling and overlong shaping
    d3s: D3SConfig = field(default_factory=D3SConfig)  # D3S down-sampling of samples and tokens
    ppo: PPOConfig = field(default_factory=PPOConfig)  # PPO's critic and GAE
    raft: RAFTConfig = field(default_factory=RAFTConfig)  # RAFT / RAFT++ selection
    rover: ROVERConfig = field(default_factory=ROVERConfig)  # ROVER's Q temperature
    dense: DenseConfig = field(default_factory=DenseConfig)  # dense per-step credit


@dataclass
class TrainerConfig:
    steps: int = 450  # RL steps
    lr: float = 1e-4  # peak learning rate; cosine decay to 0 lets the tiny model take big early steps without collapsing (5e-4 collapses)
    lr_schedule: str = "cosine"  # constant | linear | cosine (decay after warm-up)
    warmup_steps: int = 10  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    max_grad_norm: float = 1.0  # gradient clipping
    micro_batch_size: int = 64  # sequences per forward/backward (gradient accumulation over the batch)
    save_every: int = 20  # checkpoint period in steps (0: only at the end)
    eval_every: int = 50  # held-out eval period in steps (0: never during training)
    eval_problems: int = 64  # problems in the periodic eval
    seed: int = 0  # everything random derives from this
    async_rl: bool = False  # YAML/CLI key trainer.async: generate step t+1's rollouts in a thread while step t trains (train/overlap.py)
    max_staleness: int = 1  # async: rollouts may come from weights at most this many updates old (0: on-policy, equals synchronous RL)


@dataclass
class EvalConfig:
    n_samples: int = 8  # samples per problem for pass@k / maj@k
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # k values reported
    temperature: float = 1.0  # sampling temperature for pass@k
    max_new_tokens: int = 64  # completion budget
    greedy: bool = True  # also report greedy accuracy


@dataclass
class PreferenceConfig:
    loss: str = "dpo"  # algos.PREFERENCE_LOSSES: dpo | ipo | cdpo | simpo | rpo
    pairs: str | None = None  # offline: JSONL of {"prompt", "chosen", "rejected"}; None runs online iterative DPO
    beta: float = 0.1  # DPO beta (IPO tau; SimPO wants ~2)
    label_smoothing: float = 0.1  # cDPO: probability that a label is flipped
    simpo_gamma: float = 1.0  # SimPO target reward margin
    rpo_alpha: float = 1.0  # RPO weight of the chosen NLL
    epochs: int = 1  # passes over the pairs (per iteration, online)
    batch_size: int = 16  # pairs per optimiser step
    lr: float = 1e-4  # learning rate
    iterations: int = 3  # online: sample -> score -> pair -> DPO rounds
    prompts_per_iter: int = 64  # online: prompts sampled per iteration
    group_size: int = 8  # online: G completions per prompt, best vs worst is the pair
    refresh_ref: bool = True  # online: the reference becomes the current policy after each iteration
    scorer: str = "verifier"  # online: rewards.load_scorer spec (verifier or a saved reward-model directory)


@dataclass
class OfflineConfig:
    group_size: int = 8  # OREO: G trajectories sampled from the SFT policy per prompt
    prompts: int = 128  # OREO: prompts to sample trajectories for
    beta: float = 0.03  # OREO: KL-regularisation strength in the soft Bellman equation
    kl_alpha: float = 0.01  # OREO: weight of the exact per-position KL(pi || pi_ref) in the policy loss (the official recipe's 0.01)
    epochs: int = 1  # passes over the trajectories
    batch_size: int = 16  # trajectories per optimiser step
    lr: float = 1e-5  # policy learning rate
    value_lr: float = 1e-4  # value model learning rate


@dataclass
class DistConfig:
    rollout_workers: int = 0  # Ray actors that generate and score rollouts with policy replicas (0: in-process, no Ray)
    worker_cpus: float = 1.0  # CPUs Ray reserves for each rollout worker (also its torch threads, at least 1)
    worker_gpus: float = 0.0  # GPUs Ray reserves for each rollout worker (fractions share one GPU)
    rollout_backend: str = "ray"  # ray (actors, any cluster) | process (child processes on this machine, no Ray; CPU only)


@dataclass
class RewardConfig:
    scorers: list[str] = field(default_factory=list)  # learned scorers added to the verifier: rewards.load_scorer specs (saved PRM/ORM directories)
    weights: list[float] = field(default_factory=list)  # one per scorer: reward = verifier_weight * verdict + sum_i weights[i] * r_i
    verifier_weight: float = 1.0  # weight of the verifier's 0/1 verdict in the sample reward
    aggregation: str = "min"  # r_i from scorer i's step scores: min | prod | last | mean | geo_mean, or outcome (its outcome score)
    shaping: str = "none"  # dense per-step rewards (algo.dense.coef > 0) from the first process scorer: none | clip | delta (Gao et al. 2024)
    clip_eta: float = 0.5  # clip shaping: step reward r_k -> min(r_k - clip_eta, 0)
    transform: str = "none"  # r_i before weighting: none | logsigmoid (Wang et al. 2024: log sigmoid(r_i - r_ref))
    transform_quantile: float = 0.5  # logsigmoid: r_ref = this quantile of r_i over the prompt's group of samples
    online_update: bool = False  # after each rollout, call update(problems, solutions, correct) on scorers that have it (PRIME)
    # plain-Python reward functions (TRL style), 'path/to/file.py:name' or 'package.module:name':
    # fn(prompts, completions, **columns) -> list[float | None]; columns: answer, task, id; None counts as 0 (rewards/functions.py)
    functions: list[str] = field(default_factory=list)
    function_weights: list[float] = field(default_factory=list)  # one per function: reward += sum_j function_weights[j] * f_j ([]: 1 each)
    function_timeout: float = 30.0  # seconds one function may take on one batch (it runs in a worker process) before the run stops
    remote_url: str | None = None  # a reward server: POST {prompts, completions, answer, task, id} -> {"rewards": [float | None]} (rewards/remote.py)
    remote_weight: float = 1.0  # reward += remote_weight * the server's reward (None counts as 0)
    remote_timeout: float = 30.0  # seconds one request may take before it is retried
    remote_retries: int = 2  # further attempts after a failed request (timeout, connection error, HTTP 5xx/429)


@dataclass
class LoggingConfig:
    trackers: list[str] = field(default_factory=list)  # extra metric sinks beside metrics.jsonl: tensorboard (RUN/tensorboard) | wandb (offline without WANDB_API_KEY)
    samples_every: int = 10  # write sample completions with their rewards to samples.jsonl every N RL steps (0: only at evals)
    samples_per_write: int = 4  # completions written each time


@dataclass
class BoltConfig:
    bootstrapper: str = "synthetic"  # who writes stage-1 long CoT: synthetic (data/longcot.synth_longcot, rule-based) or a model (smollm2-135m-instruct, a .gguf, a directory) prompted with in-context examples
    examples: str | None = None  # JSONL of in-context examples {question, thoughts, response}; None: the 10 shipped in rewardflow/data/bolt_examples.jsonl
    icl_k: int = 10  # in-context examples per bootstrapping prompt (the paper used 10)
    prompts: int = 512  # training problems to bootstrap long CoT for
    samples: int = 1  # bootstrap completions per prompt
    temperature: float = 0.7  # bootstrap sampling temperature (a model bootstrapper)
    max_new_tokens: int = 384  # bootstrap completion budget (a model bootstrapper)
    min_thought_lines: int = 2  # format filter: thoughts need at least this many non-empty lines
    p_backtrack: float = 0.5  # synthetic bootstrapper: share of traces with one slip that is noticed and redone
    p_reflect: float = 0.7  # synthetic bootstrapper: share of traces that check their last step
    bootstrap_only: bool = False  # stop after stage 1: write the bootstrap data and its statistics only


@dataclass
class AutoCEIConfig:
    methods: list[str] = field(default_factory=lambda: ["base", "ei", "rtuning", "autocei"])  # what to compare: base policy | ei (plain expert iteration, refusals never kept) | rtuning (fixed refusal reward) | autocei
    lam: float = 0.2  # lambda of the objective f = (1 - lambda) * precision + lambda * (1 - refusal rate)
    iterations: int = 6  # expert-iteration rounds per method
    prompts_per_iter: int = 128  # training problems sampled per round (the same ones for every method)
    samples: int = 8  # completions sampled per problem per round
    temperature: float = 1.0  # sampling temperature of the rounds
    max_new_tokens: int = 64  # completion budget of sampling and evaluation
    sft_steps: int = 30  # SFT optimiser steps on each round's kept samples
    batch_size: int = 32  # kept samples per SFT step
    lr: float = 2e-4  # SFT learning rate of the initialisation and the rounds (1e-3 knocked a converged tiny policy from 0.83 to 0.39 accuracy in one round)
    fixed_refusal: float = 0.5  # rtuning: the reward of every refusal, whatever came before it
    init_prompts: int = 1024  # R-Tuning initialisation: training problems the warm-started policy answers; its wrong ones become refusal targets
    init_steps: int = 200  # SFT steps of the initialisation (the base policy every method starts from)
    init_lr: float = 3e-3  # SFT learning rate of the initialisation (new refusal tokens need the warm-start's rate; 2e-4 left them garbled)
    step_frac: float = 0.2  # curriculum step = min(step_frac * std(length), max_step) (the authors' code)
    max_step: float = 0.5  # largest move of the length threshold c1 per round
    val_size: int = 200  # validation problems the curriculum measures f on (disjoint from training and from the test split)
    select: str = "best"  # the round each method is tested with: best (highest validation f, round 0 = the base included: the paper) | last


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    bolt: BoltConfig = field(default_factory=BoltConfig)  # `rewardflow bolt`: long-CoT bootstrapping (Pang et al. 2025)
    autocei: AutoCEIConfig = field(default_factory=AutoCEIConfig)  # `rewardflow autocei`: curriculum expert iteration with refusals (Zhao et al. 2025)
