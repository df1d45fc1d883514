"""generate.py from the command line: by default the embedded SFT model (data/tiny-sft), its flags printed as JSON;
the greedy answer against transformers' Qwen3ForCausalLM.generate on the same checkpoint (reference), prompted by
transformers' apply_chat_template with the template data/tiny-sft ships."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
SFT = ROOT / "data" / "tiny-sft"
PROMPT = "Tom has 37 apples and gets 5 more. How many apples does Tom have now?"


@pytest.mark.parametrize("thinking", [True, False])
def test_default_is_the_embedded_sft_model_and_matches_transformers(thinking):
    flags = ["--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "24"]
    flags += [] if thinking else ["--no-thinking"]
    run = subprocess.run([sys.executable, str(ROOT / "generate.py"), *flags], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    args = json.loads(lines[0])
    assert Path(args["model"]) == SFT and args["preset"] is None and args["no_thinking"] is not thinking
    assert lines[1].startswith("chat format: built-in Qwen3 port")
    assert lines[2].startswith("--- sample 0 (") and lines[-1].startswith("--- ")
    text = "\n".join(lines[3:-1])

    tokenizer = AutoTokenizer.from_pretrained(SFT)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                        enable_thinking=thinking, return_tensors="pt", return_dict=False)
    model = AutoModelForCausalLM.from_pretrained(SFT, dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(ids, do_sample=False, max_new_tokens=24, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")])
    assert text == tokenizer.decode(out[0, ids.shape[1]:])
    assert ("<think>" in text) == thinking  # the non-thinking prompt already holds the (empty) think block
