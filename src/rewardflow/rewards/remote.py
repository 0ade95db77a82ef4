"""A reward computed by a server (config `reward.remote_url`): one POST per batch, JSON both ways.

Request body:  {"prompts": [str] * N, "completions": [str] * N, "answer": [str | null] * N, "task": [str] * N, "id": [str] * N}
Response body: {"rewards": [float | null] * N}   (a bare JSON list is accepted too; null counts as 0)

A request that times out, cannot connect, or gets HTTP 429 / 5xx is retried `retries` times with doubling waits;
any other failure (HTTP 4xx, a reply that is not N numbers) stops the run at once with a one-line error naming
the URL, because sending the same batch again would get the same answer.
"""
from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request

import torch


class RemoteRewardError(ValueError):
    """The reward server failed or answered something that is not one number (or null) per completion."""


RETRY_STATUS = {429, 500, 502, 503, 504}


def parse_rewards(body: bytes, n: int, url: str) -> list[float | None]:
    """The server's reply -> N finite floats or None; a RemoteRewardError naming the URL otherwise."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise RemoteRewardError(f"reward server {url} replied with something that is not JSON ({e})") from None
    values = data.get("rewards") if isinstance(data, dict) else data
    if not isinstance(values, list):
        raise RemoteRewardError(f"reward server {url} must reply {{\"rewards\": [...]}} or a JSON list; got {type(data).__name__}")
    if len(values) != n:
        raise RemoteRewardError(f"reward server {url} returned {len(values)} rewards for {n} completions")
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise RemoteRewardError(f"reward server {url} returned {v!r} at index {i}; each reward must be a finite number or null")
        out.append(None if v is None else float(v))
    return out


class RemoteReward:
    """POSTs batches to `url`; `rewards(...)` -> weight * r as a [B, G] tensor; `pop_metrics()` -> reward/remote."""

    def __init__(self, url: str, *, weight: float = 1.0, timeout: float = 30.0, retries: int = 2, backoff: float = 0.5):
        self.url, self.weight, self.timeout, self.retries, self.backoff = url, float(weight), float(timeout), int(retries), float(backoff)
        self._sum, self._count, self.requests, self.retried = 0.0, 0, 0, 0

    def _post(self, payload: bytes) -> bytes:
        req = urllib.request.Request(self.url, data=payload, headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return resp.read()

    def values(self, problems: list, texts: list[str]) -> list[float | None]:
        """The server's reward for each of the N completions `texts` of `problems`."""
        payload = json.dumps({"prompts": [p.prompt for p in problems], "completions": list(texts), "answer": [p.answer for p in problems],
                              "task": [p.task for p in problems], "id": [p.id for p in problems]}).encode()
        why = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self.requests += 1
            try:
                return parse_rewards(self._post(payload), len(texts), self.url)
            except urllib.error.HTTPError as e:
                if e.code not in RETRY_STATUS:
                    raise RemoteRewardError(f"reward server {self.url} answered HTTP {e.code} {e.reason}; not retried") from None
                why = f"HTTP {e.code} {e.reason}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                reason = getattr(e, "reason", e)
                why = f"timed out after {self.timeout:g} s" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else f"{reason}"
        raise RemoteRewardError(f"reward server {self.url} failed {self.retries + 1} times (last: {why}); check the server, or raise "
                                "reward.remote_timeout / reward.remote_retries")

    def rewards(self, problems: list, texts: list[str], shape: tuple[int, int]) -> torch.Tensor:
        vals = self.values(problems, texts)
        given = [v for v in vals if v is not None]
        self._sum, self._count = self._sum + sum(given), self._count + len(given)
        return self.weight * torch.tensor([0.0 if v is None else v for v in vals], dtype=torch.float).view(shape)  # [B, G]

    def pop_metrics(self) -> dict:
        """reward/remote: the mean unweighted server reward since the last pop (None left out)."""
        out = {"reward/remote": self._sum / self._count} if self._count else {}
        self._sum, self._count = 0.0, 0
        return out

    def close(self) -> None:
        pass
