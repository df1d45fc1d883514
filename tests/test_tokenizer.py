"""tokenizer.py against independent references: transformers' apply_chat_template running the official Qwen3 Jinja
template (ids and, via {% generation %} tags, the assistant mask) or a checkpoint's own template, the official
tokenizer.json's added-token flags, and the frozen data/tiny/ files."""
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # references are read from local files only
from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402

from model import TINY_DIR, from_preset, save_model  # noqa: E402
from tokenizer import QWEN3_TEMPLATE_FILE, Tokenizer, write_tiny  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QWEN = Path(__file__).resolve().parents[2] / "shared" / "peer" / "qwen3-tokenizer"
needs_qwen = pytest.mark.skipif(not (QWEN / "tokenizer.json").is_file(),
                                reason=f"the official Qwen3 tokenizer is not at {QWEN} (../shared absent)")

SYS = {"role": "system", "content": "You are a careful assistant."}
CONVERSATIONS = {  # each exercises one rule of the template (see tokenizer.py's docstring)
    "single_turn": [{"role": "user", "content": "What is 37+45?"}],
    "system_prompt": [SYS, {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}],
    "reasoning_content": [{"role": "user", "content": "2*3?"},
                          {"role": "assistant", "content": "\\boxed{6}", "reasoning_content": "2*3=6."}],
    "inline_think": [{"role": "user", "content": "Capital of France?"},
                     {"role": "assistant", "content": "<think>\nIt is Paris.\n</think>\n\nParis."}],
    "end_think_only": [{"role": "user", "content": "Pick A or B"},
                       {"role": "assistant", "content": "weighing...\n</think>Answer: B"}],
    "newline_stripping": [{"role": "user", "content": "x"},
                          {"role": "assistant", "content": "\n\n  y\n", "reasoning_content": "\n\n think \n\n"}],
    "empty_reasoning_keeps_content": [{"role": "user", "content": "q"},
                                      {"role": "assistant", "content": "a</think>b", "reasoning_content": ""}],
    "history_drops_reasoning": [
        SYS, {"role": "user", "content": "What is 12+30?"},
        {"role": "assistant", "content": "42", "reasoning_content": "12+30=42"},
        {"role": "user", "content": "And times 2?"},
        {"role": "assistant", "content": "<think>\n42*2=84\n</think>\n\n\\boxed{84}"}],
    "system_not_first": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be brief."},
                         {"role": "assistant", "content": "Hey"}, {"role": "system", "content": "Be kind."},
                         {"role": "user", "content": "Tell me more"}],
    "steps_after_last_query": [{"role": "user", "content": "Plan, then answer."},
                               {"role": "assistant", "content": "Step 1.", "reasoning_content": "plan"},
                               {"role": "assistant", "content": "Step 2."},
                               {"role": "assistant", "content": "Done.", "reasoning_content": "check"}],
    "tool_response_is_not_a_query": [
        {"role": "user", "content": "Go"}, {"role": "assistant", "content": "ok", "reasoning_content": "r1"},
        {"role": "user", "content": "<tool_response>\n7\n</tool_response>"},
        {"role": "assistant", "content": "7", "reasoning_content": "r2"}],
    "tag_mention_is_a_query": [
        {"role": "user", "content": "Go"}, {"role": "assistant", "content": "ok", "reasoning_content": "r1"},
        {"role": "user", "content": "<tool_response> is a tag; what is it for?"},
        {"role": "assistant", "content": "Tools.", "reasoning_content": "r2"}],
    "token_across_header_and_body": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "\nb"},
                                     {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}],
    "no_user": [SYS, {"role": "assistant", "content": "Hi there", "reasoning_content": "unseen"}],
    "unicode_and_specials": [{"role": "user", "content": "Übersetze: «naïve café» 🙂 and 3.14159 <|im_end|>"},
                             {"role": "assistant", "content": "    def f(x):\n\treturn x  # 日本語"}],
}
TRAINING = {name: m for name, m in CONVERSATIONS.items() if m[-1]["role"] == "assistant"}
# Conversations where a think block with reasoning is rendered: enable_thinking=False cannot train them.
SHOWS_REASONING = {"reasoning_content", "inline_think", "end_think_only", "newline_stripping",
                   "history_drops_reasoning", "steps_after_last_query", "tool_response_is_not_a_query",
                   "tag_mention_is_a_query"}


@pytest.fixture(scope="module")
def qwen():
    return Tokenizer.from_dir(QWEN)


@pytest.fixture(scope="module")
def reference():
    return PreTrainedTokenizerFast.from_pretrained(QWEN)


@pytest.fixture(scope="module")
def tiny():
    return Tokenizer.from_dir(REPO / "data" / "tiny")


@needs_qwen
@pytest.mark.parametrize("name", CONVERSATIONS)
def test_chat_equals_official_template(qwen, reference, name):
    messages = CONVERSATIONS[name]
    for add_generation_prompt in (False, True):
        for enable_thinking in (True, False):
            kw = dict(add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking)
            assert qwen.render_chat(messages, **kw) == reference.apply_chat_template(messages, tokenize=False, **kw)
            assert qwen.encode_chat(messages, **kw) == reference.apply_chat_template(messages, return_dict=False, **kw)


def generation_tagged(template: str, enable_thinking: bool) -> str:
    """The official template with TRL's {% generation %} tags around each assistant body, <|im_end|> included (moved
    before the tool-call block, which these conversations do not use). Without thinking, the think block stays
    outside the tags: it is part of the prompt then."""
    header = r"'<|im_start|>' + message.role + '\n"
    think = r"<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n'"
    tagged_think = (
        "{{- " + header + "' }}{% generation %}{{- '" + think + r" + content.lstrip('\n') + '<|im_end|>' }}"
        if enable_thinking else
        "{{- " + header + think + r" }}{% generation %}{{- content.lstrip('\n') + '<|im_end|>' }}")
    edits = [  # (official text, tagged text, occurrences)
        ("{{- " + header + think + r" + content.lstrip('\n') }}", tagged_think + "{% endgeneration %}", 1),
        ("{{- " + header + "' + content }}",
         "{{- " + header + "' }}{% generation %}{{- content + '<|im_end|>' }}{% endgeneration %}", 2),
        (r"{{- '<|im_end|>\n' }}" + "\n    {%- elif", r"{{- '\n' }}" + "\n    {%- elif", 1),
    ]
    for old, new, count in edits:
        assert template.count(old) == count, f"the official template changed; update this edit: {old}"
        template = template.replace(old, new)
    return template


@needs_qwen
@pytest.mark.parametrize("enable_thinking", [True, False])
@pytest.mark.parametrize("name", TRAINING)
def test_mask_equals_generation_tags(qwen, reference, name, enable_thinking):
    messages = TRAINING[name]
    if not enable_thinking and name in SHOWS_REASONING:
        with pytest.raises(ValueError, match="enable_thinking"):
            qwen.encode_chat_with_mask(messages, enable_thinking=False)
        return
    tagged = generation_tagged(reference.chat_template, enable_thinking)
    out = reference.apply_chat_template(messages, chat_template=tagged, return_assistant_tokens_mask=True)
    assert out["input_ids"] == reference.apply_chat_template(messages, return_dict=False)  # tags change no text
    ids, mask = qwen.encode_chat_with_mask(messages, enable_thinking=enable_thinking)
    assert ids == out["input_ids"]
    assert mask == out["assistant_masks"]


@pytest.mark.parametrize("which", ["qwen", "tiny"])
@pytest.mark.parametrize("enable_thinking", [True, False])
def test_mask_starts_where_generation_prompt_ends(request, which, enable_thinking):
    """What the trainer relies on: an SFT sequence is the generation prompt's ids (mask 0) followed by the tokens a
    sampled answer would have (mask 1) and the '\\n' after <|im_end|> (mask 0)."""
    if which == "qwen" and not (QWEN / "tokenizer.json").is_file():
        pytest.skip(f"the official Qwen3 tokenizer is not at {QWEN} (../shared absent)")
    tok = request.getfixturevalue(which)
    prompt = [SYS, {"role": "user", "content": "Sam has 37 apples and gets 45 more. How many now?"}]
    answer = {"role": "assistant", "content": "A: 37+45=82. \\boxed{82}"}
    if enable_thinking:
        answer["reasoning_content"] = "37+45: 7+5+0=12,3+4+1=8."
    prompt_ids = tok.encode_chat(prompt, add_generation_prompt=True, enable_thinking=enable_thinking)
    ids, mask = tok.encode_chat_with_mask(prompt + [answer], enable_thinking=enable_thinking)
    n = len(prompt_ids)
    assert ids[:n] == prompt_ids and ids[-2:] == [tok.im_end_id, tok.encode("\n")[0]]
    assert mask == [0] * n + [1] * (len(ids) - n - 1) + [0]
    assert (ids[n] == tok.think_id) == enable_thinking


def test_tools_are_rejected(tiny):
    with pytest.raises(ValueError, match="out of scope"):
        tiny.render_chat([{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}])


def test_tiny_regenerates_bit_identically(tmp_path):
    write_tiny(tmp_path)  # what `python tokenizer.py --train-tiny --out DIR` runs
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (REPO / "data" / "tiny" / name).read_bytes(), name


TEXTS = ["What is 37+45? A: 37+45=82. \\boxed{82}", "def f(x):\n    return x * 7\n", "Übersetze «naïve café» 🙂 日本語",
         "Answer: B\n\n\n  trailing   spaces  ", "<|im_start|>user\nhi<|im_end|>\n<think>\n\n</think>\n\n",
         "x=2024-1.5e10"]


def test_tiny_round_trips_and_splits_digits(tiny):
    for text in TEXTS:
        ids = tiny.encode(text)
        assert tiny.decode(ids) == text
        pieces = [tiny.decode([i]) for i in ids]
        # Every digit is its own token (Qwen's pre-tokenizer regex alternative \p{N}).
        assert [p for p in pieces if any(c.isdigit() for c in p)] == [c for c in text if c.isdigit()]
    assert tiny.vocab_size == 512


@needs_qwen
def test_tiny_added_tokens_mirror_qwen3(tiny, qwen):
    """Same added tokens, order and flags (special, normalized, ...) as the official tokenizer.json."""
    def flags(t):
        return t.content, t.special, t.normalized, t.lstrip, t.rstrip, t.single_word
    official = {t.content: flags(t) for t in qwen.tok.get_added_tokens_decoder().values()}
    ours = [flags(t) for _, t in sorted(tiny.tok.get_added_tokens_decoder().items())]
    assert [t[0] for t in ours] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    assert ours == [official[t[0]] for t in ours]
    text = "<|im_start|>assistant\n<think>\nhm\n</think>\n\nok<|im_end|>"
    assert tiny.decode(tiny.encode(text), skip_special_tokens=True) == "assistant\n<think>\nhm\n</think>\n\nok"


@needs_qwen
def test_tiny_loads_in_transformers_and_follows_the_template(tiny, reference):
    """data/tiny/ as transformers (and vLLM) load it, running the official template: same ids as ours."""
    hf = AutoTokenizer.from_pretrained(REPO / "data" / "tiny")
    assert (hf.eos_token_id, hf.pad_token_id, len(hf)) == (tiny.eos_id, tiny.pad_id, tiny.vocab_size)
    for messages in CONVERSATIONS.values():
        for enable_thinking in (True, False):
            kw = dict(add_generation_prompt=messages[-1]["role"] == "user", enable_thinking=enable_thinking)
            assert tiny.encode_chat(messages, **kw) == hf.apply_chat_template(
                messages, chat_template=reference.chat_template, return_dict=False, **kw)


def both_settings(messages):
    return [dict(add_generation_prompt=messages[-1]["role"] == "user", enable_thinking=thinking)
            for thinking in (True, False)]


@needs_qwen
def test_shipped_template_is_the_official_one(reference):
    assert QWEN3_TEMPLATE_FILE.read_text() == reference.chat_template


def test_checkpoints_we_write_apply_chat_template(tmp_path):
    """A checkpoint as the trainers save one (tokenizer files copied from the default --model, data/tiny-sft):
    transformers loads its template and renders every conversation, thinking on and off, to our text and ids."""
    save_model(from_preset("tiny"), tmp_path / "ckpt", source_dir=TINY_DIR.parent / "tiny-sft")
    hf = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    ours = Tokenizer.from_dir(tmp_path / "ckpt")
    assert ours.template is None and "built-in Qwen3 port" in ours.chat_format
    for messages in CONVERSATIONS.values():
        for kw in both_settings(messages):
            assert ours.render_chat(messages, **kw) == hf.apply_chat_template(messages, tokenize=False, **kw)
            assert ours.encode_chat(messages, **kw) == hf.apply_chat_template(messages, return_dict=False, **kw)


# A template of a checkpoint's own (ChatML with a default system prompt, as Qwen2.5's, and no think blocks), with
# transformers' {% generation %} tags around each assistant body for its assistant mask.
CUSTOM = r"""{%- if messages[0].role != 'system' %}{{- '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{%- endif %}
{%- for m in messages %}
    {%- if m.role == 'assistant' %}
        {{- '<|im_start|>assistant\n' }}{% generation %}{{- m.content + '<|im_end|>' }}{% endgeneration %}{{- '\n' }}
    {%- else %}
        {{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"""


def checkpoint_with_template(directory: Path, template: str) -> Path:
    directory.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (directory / name).write_bytes((TINY_DIR / name).read_bytes())
    (directory / "chat_template.jinja").write_text(template)  # wins over tokenizer_config's, as in transformers
    return directory


def test_own_template_is_used_where_it_differs(tmp_path):
    """The checkpoint's template renders, as transformers renders it (text, ids and {% generation %} mask)."""
    path = checkpoint_with_template(tmp_path / "custom", CUSTOM)
    ours, hf = Tokenizer.from_dir(path), AutoTokenizer.from_pretrained(path)
    assert ours.template is not None and ours.chat_format.startswith(f"{path / 'chat_template.jinja'}, rendered")
    for messages in CONVERSATIONS.values():
        for kw in both_settings(messages):
            assert ours.render_chat(messages, **kw) == hf.apply_chat_template(messages, tokenize=False, **kw)
            assert ours.encode_chat(messages, **kw) == hf.apply_chat_template(messages, return_dict=False, **kw)
    assert ours.render_chat(CONVERSATIONS["single_turn"]).startswith("<|im_start|>system\nYou are tiny.")
    for messages in TRAINING.values():
        out = hf.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
        assert ours.encode_chat_with_mask(messages) == (out["input_ids"], out["assistant_masks"])


def test_template_that_agrees_keeps_the_port(tmp_path):
    """The official template, reformatted (comments, other spacing inside the tags): the same text, so the port."""
    agreeing = QWEN3_TEMPLATE_FILE.read_text().replace("{%- endfor %}", "{#- a comment -#}{%-   endfor   %}")
    ours = Tokenizer.from_dir(checkpoint_with_template(tmp_path / "same", agreeing))
    assert ours.template is None and "renders all" in ours.chat_format
    # one character off in the non-thinking prompt is caught by the probes
    off = QWEN3_TEMPLATE_FILE.read_text().replace("'<think>\\n\\n</think>\\n\\n'", "'<think>\\n</think>\\n\\n'")
    assert off != QWEN3_TEMPLATE_FILE.read_text()
    ours = Tokenizer.from_dir(checkpoint_with_template(tmp_path / "off", off))
    assert ours.template is not None and "'enable_thinking': False" in ours.chat_format


def test_a_broken_template_or_config_is_one_error_naming_the_file(tmp_path):
    path = checkpoint_with_template(tmp_path / "broken", "{% for m in messages %}{{ m.content }}")
    with pytest.raises(ValueError, match=f"{path / 'chat_template.jinja'}: the chat template does not compile"):
        Tokenizer.from_dir(path)
    (path / "chat_template.jinja").unlink()
    (path / "tokenizer_config.json").write_text("{")
    with pytest.raises(ValueError, match=f"{path / 'tokenizer_config.json'}: not valid JSON"):
        Tokenizer.from_dir(path)


def test_real_qwen25_uses_its_own_template(qwen25_dir):
    """Qwen2.5-Coder's chat_template.jinja adds a default system prompt: ours renders it as transformers does."""
    ours, hf = Tokenizer.from_dir(qwen25_dir), AutoTokenizer.from_pretrained(qwen25_dir)
    assert ours.template is not None and "chat_template.jinja" in ours.chat_format
    for messages in CONVERSATIONS.values():
        for kw in both_settings(messages):
            assert ours.encode_chat(messages, **kw) == hf.apply_chat_template(messages, return_dict=False, **kw)
