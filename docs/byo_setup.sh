# Example files for docs/bring_your_own.md: run inside an empty folder (e.g. byo/) with the rewardflow environment active.
python - <<'EOF'
import json, random
import pyarrow as pa, pyarrow.parquet as pq

rng = random.Random(0)
def pair():
    a, b, c = (rng.randint(1, 9) for _ in range(3))
    return f"What is {a} + {b} + {c}?", a + b + c, f"{a} + {b} = {a + b}. {a + b} + {c} = {a + b + c}. Answer: {a + b + c}"

rows = [pair() for _ in range(600)]
# RL prompts with your own field names, as parquet; held-out problems as JSONL
pq.write_table(pa.Table.from_pylist([{"q": q, "gold": str(s)} for q, s, _ in rows[:400]]), "my_problems.parquet")
with open("my_eval.jsonl", "w") as f:
    for q, s, _ in rows[400:450]:
        f.write(json.dumps({"q": q, "gold": str(s)}) + "\n")
# SFT rows: prompt/completion and the conversational format, mixed in one file
with open("my_sft.jsonl", "w") as f:
    for i, (q, _, worked) in enumerate(rows[450:]):
        row = {"prompt": q, "completion": worked} if i % 2 else {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": worked}]}
        f.write(json.dumps(row) + "\n")
EOF
cat > my_rewards.py <<'EOF'
def brevity(prompts, completions, **columns):
    """Plain-Python reward, TRL signature: 1 for completions under 60 characters, else 0."""
    return [1.0 if len(c) < 60 else 0.0 for c in completions]
EOF
cat > reward_server.py <<'EOF'
import json
from http.server import BaseHTTPRequestHandler, HTTPServer

class Score(BaseHTTPRequestHandler):
    def do_POST(self):
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        # reward: shows its working -- 0.5 per "=" step, at most 1 (batch also holds prompts, answer, task, id)
        rewards = [min(c.count("="), 2) / 2 for c in batch["completions"]]
        body = json.dumps({"rewards": rewards}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)

HTTPServer(("127.0.0.1", 8765), Score).serve_forever()
EOF
