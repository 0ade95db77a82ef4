"""Problems from reasoning-gym tasks: offline, seeded, with disjoint train and eval splits."""
from __future__ import annotations

from functools import cached_property

from .problem import Problem


def _problem(task: str, entry: dict, split: str, index: int) -> Problem:
    return Problem(
        id=f"{task}/{split}/{index}",
        prompt=entry["question"],
        answer=str(entry["answer"]),
        task=task,
        meta={"rg_entry": entry, **{k: v for k, v in entry.get("metadata", {}).items() if k != "difficulty"}},
    )


class GymSource:
    """A reasoning-gym task by name. The eval split is fixed by `seed`; training problems come from a
    differently seeded stream and skip any question that occurs in the eval split, so they never overlap."""

    def __init__(self, task: str, *, seed: int = 0, eval_size: int = 200, **task_kwargs):
        import reasoning_gym

        self.task, self.seed, self.eval_size, self.task_kwargs = task, seed, eval_size, task_kwargs
        try:
            self._eval_ds = reasoning_gym.create_dataset(task, size=eval_size, seed=seed, **task_kwargs)
            # The training stream is large and lazy: reasoning-gym builds item i on access from (seed, i).
            self._train_ds = reasoning_gym.create_dataset(task, size=10**7, seed=seed + 7919, **task_kwargs)
        except Exception as e:  # unknown task names and bad kwargs come back as a clear error
            raise ValueError(f"reasoning-gym task {task!r} with {task_kwargs}: {e}") from e

    @cached_property
    def eval_problems(self) -> list[Problem]:
        return [_problem(self.task, self._eval_ds[i], "eval", i) for i in range(self.eval_size)]

    @cached_property
    def _eval_questions(self) -> set[str]:
        return {p.prompt for p in self.eval_problems}

    def train_problem(self, index: int) -> Problem:
        """Training problem `index` (deterministic); eval questions are skipped by probing onwards."""
        i = index
        while True:
            entry = self._train_ds[i % self._train_ds.size]
            if entry["question"] not in self._eval_questions:
                return _problem(self.task, entry, "train", i)
            i += 10**6 + 1  # a different, still deterministic, item

    def train_problems(self, indices) -> list[Problem]:
        return [self.train_problem(int(i)) for i in indices]
