"""reward.remote_url against a real HTTP server on localhost that the test starts: the batch it receives, weighted
rewards with null as 0, retries after 503 and after a timeout, no retry after 400, bad replies named, config checks."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from rewardflow.data.problem import Problem
from rewardflow.recipes.config_loader import ConfigError, load_config
from rewardflow.rewards.remote import RemoteReward, RemoteRewardError, parse_rewards
from rewardflow.train.reward import function_metrics, load_reward_scorers, score_samples

# B = 2 prompts x G = 2 samples, prompt-major
PROBLEMS = [Problem("t/0", "1+1?", "2", "math")] * 2 + [Problem("t/1", "2+2?", "4", "math")] * 2
TEXTS = ["2", "three", "4", "44"]


class Server:
    """A reward server whose behaviour per request comes from a script: ('ok', None) answers len(completion) for each
    completion (None for an empty one), ('status', code) answers that HTTP error, ('sleep', s) waits s seconds first,
    ('raw', bytes) sends the bytes."""

    def __init__(self):
        self.script, self.bodies = [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                kind, arg = server.script.pop(0) if server.script else ("ok", None)
                if kind == "sleep":
                    time.sleep(arg)
                    kind = "ok"
                if kind == "status":
                    self.send_error(arg)
                    return
                reply = arg if kind == "raw" else json.dumps({"rewards": [float(len(c)) if c else None for c in body["completions"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/score"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_the_server_gets_the_batch_and_its_rewards_are_weighted(server):
    remote = RemoteReward(server.url, weight=0.5, timeout=5, retries=0)
    r = remote.rewards(PROBLEMS, TEXTS, (2, 2))
    # len("2")=1, len("three")=5, len("4")=1, len("44")=2, each times 0.5
    assert torch.equal(r, torch.tensor([[0.5, 2.5], [0.5, 1.0]]))
    body = server.bodies[0]
    assert body == {"prompts": ["1+1?", "1+1?", "2+2?", "2+2?"], "completions": TEXTS, "answer": ["2", "2", "4", "4"],
                    "task": ["math"] * 4, "id": ["t/0", "t/0", "t/1", "t/1"]}
    assert remote.pop_metrics() == {"reward/remote": (1 + 5 + 1 + 2) / 4}  # the unweighted mean
    assert remote.pop_metrics() == {}


def test_null_counts_as_zero_and_is_left_out_of_the_mean(server):
    remote = RemoteReward(server.url, retries=0)
    r = remote.rewards(PROBLEMS, ["", "abc", "", "ab"], (2, 2))  # the server answers null for empty completions
    assert torch.equal(r, torch.tensor([[0.0, 3.0], [0.0, 2.0]]))
    assert remote.pop_metrics() == {"reward/remote": 2.5}  # (3 + 2) / 2: the nulls are not zeros in the mean


def test_503_then_success_is_retried(server):
    server.script = [("status", 503), ("status", 502)]
    remote = RemoteReward(server.url, retries=2, backoff=0.01)
    assert remote.values(PROBLEMS, TEXTS) == [1.0, 5.0, 1.0, 2.0]
    assert remote.requests == 3 and remote.retried == 2 and len(server.bodies) == 3


def test_a_timeout_is_retried_then_reported(server):
    server.script = [("sleep", 1.0)]
    remote = RemoteReward(server.url, timeout=0.2, retries=1, backoff=0.01)
    assert remote.values(PROBLEMS, TEXTS) == [1.0, 5.0, 1.0, 2.0]  # the first request timed out, the retry answered
    assert remote.retried == 1
    server.script = [("sleep", 1.0), ("sleep", 1.0)]
    t0 = time.perf_counter()
    with pytest.raises(RemoteRewardError, match=r"failed 2 times \(last: timed out after 0.2 s\).*reward.remote_timeout"):
        remote.values(PROBLEMS, TEXTS)
    assert time.perf_counter() - t0 < 1.5  # two 0.2 s timeouts and a short wait, not the server's 2 s


def test_client_errors_are_not_retried(server):
    server.script = [("status", 400)]
    remote = RemoteReward(server.url, retries=3, backoff=0.01)
    with pytest.raises(RemoteRewardError, match=r"answered HTTP 400 .*not retried"):
        remote.values(PROBLEMS, TEXTS)
    assert len(server.bodies) == 1


def test_no_server_is_a_clear_error():
    remote = RemoteReward("http://127.0.0.1:9/none", timeout=0.5, retries=1, backoff=0.01)  # port 9 (discard): nothing listens
    with pytest.raises(RemoteRewardError, match=r"http://127.0.0.1:9/none failed 2 times"):
        remote.values(PROBLEMS, TEXTS)


@pytest.mark.parametrize("reply, message", [
    (b"not json", "not JSON"),
    (b'{"scores": [1, 2, 3, 4]}', "must reply"),
    (b'{"rewards": [1, 2]}', "returned 2 rewards for 4 completions"),
    (b'{"rewards": [1, "x", 3, 4]}', r"returned 'x' at index 1"),
    (b'{"rewards": [1, 2, NaN, 4]}', "at index 2"),
])
def test_bad_replies_name_the_url(server, reply, message):
    server.script = [("raw", reply)]
    with pytest.raises(RemoteRewardError, match=message):
        RemoteReward(server.url, retries=0).values(PROBLEMS, TEXTS)


def test_a_bare_list_reply_is_accepted():
    assert parse_rewards(b"[1, null, 0.5]", 3, "u") == [1.0, None, 0.5]


def test_config_wires_it_into_the_rl_reward(server):
    cfg = load_config(overrides=[f"reward.remote_url={server.url}", "reward.remote_weight=2.0", "reward.verifier_weight=1.0"])
    scorers = load_reward_scorers(cfg.reward)
    correct = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # [B, G]
    rewards, steps = score_samples(list(scorers), PROBLEMS, TEXTS, correct, cfg.reward, dense=False, functions=scorers.functions)
    # verdict + 2 * len(text): [[1 + 2, 0 + 10], [1 + 2, 0 + 4]]
    assert torch.equal(rewards, torch.tensor([[3.0, 10.0], [3.0, 4.0]])) and steps is None
    assert function_metrics(scorers) == {"reward/remote": 2.25}


def test_config_validation():
    with pytest.raises(ConfigError, match="http:// or https://"):
        load_config(overrides=["reward.remote_url=ftp://x"])
    with pytest.raises(ConfigError, match="reward.remote_timeout"):
        load_config(overrides=["reward.remote_url=http://x", "reward.remote_timeout=0"])
    with pytest.raises(ConfigError, match="reward.remote_retries"):
        load_config(overrides=["reward.remote_url=http://x", "reward.remote_retries=-1"])
