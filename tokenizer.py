"""Qwen3's tokenizer and chat format in plain Python, plus a tiny BPE tokenizer so everything runs on a CPU.

`Tokenizer.from_dir(dir)` loads `dir/tokenizer.json` with `tokenizers` (the official Qwen3 file, or data/tiny/).
`render_chat` is a line-by-line port of the official Qwen3 Jinja chat template (tokenizer_config.json "chat_template"),
so its text, and the ids of `encode_chat`, equal transformers' `apply_chat_template` (tests/test_tokenizer.py checks
this). What the template does, and so what this file does:
- a system message is rendered first, only when it is messages[0]; a later system message renders like a user turn;
- an assistant turn's reasoning is `reasoning_content`, or else the text before `</think>` in its content (and the
  content is what follows), each stripped of '\n' at the joins;
- reasoning is shown as `<think>\n...\n</think>\n\n` only for assistant turns after the last user query: Qwen3 drops
  the thinking of earlier turns from the history. The last turn always gets the block, empty if it has no reasoning;
- `enable_thinking=False` appends the empty block `<think>\n\n</think>\n\n` after the generation prompt, which is
  how Qwen3 is switched to its non-thinking mode.
Tools (the template's `tools`, `tool_calls`, role "tool") are out of scope: such messages raise.

A checkpoint may carry a chat template of its own (tokenizer_config.json "chat_template", or chat_template.jinja,
which wins, as in transformers). `from_dir` renders it with jinja2, as transformers does, on a few probe
conversations (system/user/assistant turns, reasoning shown and dropped, thinking on and off) and keeps the port
only when every rendering agrees; otherwise the checkpoint's template renders every chat (e.g. Qwen2.5's, which adds
a default system prompt). `Tokenizer.chat_format` says which was chosen and why; the scripts print it.

`python tokenizer.py --train-tiny` regenerates data/tiny/ bit-identically (a test checks this).
"""
import argparse
import json
import random
import re
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as HFTokenizer

from files import write_atomic

ENDOFTEXT, IM_START, IM_END, THINK, END_THINK = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"
ROLES = ("system", "user", "assistant")
EMPTY_THINK = f"{THINK}\n\n{END_THINK}\n\n"  # Qwen3's switch to non-thinking mode, appended to the prompt
# The official Qwen3 chat template, verbatim: data/tiny/'s tokenizer_config.json carries it, so every checkpoint we
# write renders chats in transformers, vLLM and lm-eval as render() does.
QWEN3_TEMPLATE_FILE = Path(__file__).resolve().parent / "data" / "qwen3_chat_template.jinja"


class Tokenizer:
    """A `tokenizers.Tokenizer` plus the ids the chat format and the trainers need.

    eos_id is `<|im_end|>`: every sequence in this project is chat-formatted and Qwen3 chat models end their turn
    with it (it is the official tokenizer_config's eos_token). `<|endoftext|>` is the pad token, as in Qwen3's
    tokenizer_config. Both come from tokenizer.json's added tokens: tokenizer_config.json is read only for a chat
    template and the special-token strings transformers hands such a template.
    """

    def __init__(self, tok: HFTokenizer, chat_template: str | None = None, where: str = "the tokenizer",
                 special_tokens: dict | None = None):
        self.tok = tok
        # 151,669 for Qwen3, whose embedding is padded to 151,936 rows.
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.im_start_id, self.im_end_id, self.pad_id = (self._id(t) for t in (IM_START, IM_END, ENDOFTEXT))
        # None where absent: Qwen2.5's tokenizer has the chat tokens but not Qwen3's think tokens
        self.think_id, self.end_think_id = tok.token_to_id(THINK), tok.token_to_id(END_THINK)
        self.eos_id = self.im_end_id
        # The chat format: the port (render) unless the given template renders a probe differently; then the template
        self.template, self.special_tokens = None, special_tokens or {}
        if chat_template is None:
            self.chat_format = f"built-in Qwen3 port ({where} has no chat template)"
            return
        try:
            template = compile_template(chat_template)
        except jinja2.TemplateSyntaxError as e:
            raise ValueError(f"{where}: the chat template does not compile (line {e.lineno}: {e.message})") from None
        for name, messages in PROBES.items():
            for kw in probe_settings(messages):
                try:
                    theirs = template.render(messages=messages, **kw, **self.special_tokens)
                except jinja2.TemplateError:  # e.g. raise_exception("System role not supported")
                    theirs = None
                if theirs != render(messages, **kw)[0]:
                    self.template = template
                    self.chat_format = (f"{where}, rendered with jinja2 (it differs from the built-in Qwen3 port on "
                                        f"probe {name!r}, {kw})")
                    return
        self.chat_format = f"built-in Qwen3 port ({where} renders all {len(PROBES)} probe conversations as it does)"

    @classmethod
    def from_dir(cls, path) -> "Tokenizer":
        path = Path(path)
        file = path / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found: pass a model directory holding Qwen3's tokenizer.json "
                                    f"(or data/tiny/, made by `python tokenizer.py --train-tiny`)")
        config = {}
        if (path / "tokenizer_config.json").is_file():
            try:
                config = json.loads((path / "tokenizer_config.json").read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{path / 'tokenizer_config.json'}: not valid JSON ({e})") from None
        # transformers' special_tokens_map, which it passes to the template: some templates write bos_token
        special = {k: v["content"] if isinstance(v, dict) else v for k in ("bos_token", "eos_token", "unk_token",
                                                                          "pad_token") if (v := config.get(k))}
        if (path / "chat_template.jinja").is_file():
            where, template = path / "chat_template.jinja", (path / "chat_template.jinja").read_text()
        else:
            where, template = path / "tokenizer_config.json", config.get("chat_template")
            if isinstance(template, list):  # several named templates: transformers' apply_chat_template takes "default"
                template = {t["name"]: t["template"] for t in template}.get("default")
        return cls(HFTokenizer.from_file(str(file)), template, str(where), special)

    def _id(self, token: str) -> int:
        i = self.tok.token_to_id(token)
        if i is None:
            raise ValueError(f"tokenizer.json has no {token!r} token; the Qwen chat format needs "
                             f"{ENDOFTEXT} {IM_START} {IM_END}")
        return i

    def encode(self, text: str) -> list[int]:
        # No BOS/EOS is added: Qwen3 has none (add_bos_token false), and apply_chat_template passes
        # add_special_tokens=False too.
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def render_chat(self, messages, add_generation_prompt=False, enable_thinking=True) -> str:
        if self.template is not None:  # the keyword arguments transformers' apply_chat_template passes
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        enable_thinking=enable_thinking, **self.special_tokens)
        return render(messages, add_generation_prompt, enable_thinking)[0]

    def encode_chat(self, messages, add_generation_prompt=False, enable_thinking=True) -> list[int]:
        return self.encode(self.render_chat(messages, add_generation_prompt, enable_thinking))

    def encode_chat_with_mask(self, messages, enable_thinking=True) -> tuple[list[int], list[int]]:
        """Token ids of the rendered chat and a loss mask: 1 on the tokens of every assistant turn's body.

        The body is what the model writes after the prompt `<|im_start|>assistant\\n`: the think block, the
        content and the closing `<|im_end|>` (the model must learn to stop). Not the header and not the '\\n' after
        `<|im_end|>`, which the next prompt supplies. This is the span TRL's assistant-only loss marks with
        `{% generation %}`. With enable_thinking=False the empty think block belongs to the prompt (the generation
        prompt appends it), so it is masked 0 and a turn with reasoning raises; the ids are the same either way.
        Invariant: for prompt + [answer], the ids start with encode_chat(prompt, True, enable_thinking) and the
        mask is 0 exactly there.

        The mask comes from character offsets of one encoding of the whole text, never from encoding pieces
        (BPE may merge across a join): a token is in the mask if its characters overlap a body. So when a history
        answer starts with '\\n', the '\\n\\n' token spanning the header's '\\n' is in, as with transformers'
        `return_assistant_tokens_mask` (char_to_token of the body's first character).

        With a checkpoint's own template, a turn's body starts where the conversation before it, rendered with the
        generation prompt, ends (whatever that template puts after the header is prompt) and ends after the first
        `<|im_end|>` that follows.
        """
        text, turns = render(messages, False, enable_thinking) if self.template is None else \
            self.template_turns(messages, enable_thinking)
        for i, start, answer, _ in turns:
            if not enable_thinking and text[start:answer] not in ("", EMPTY_THINK):
                raise ValueError(f"messages[{i}] has reasoning, but enable_thinking=False trains the answer after an "
                                 f"empty think block; pass enable_thinking=True or drop its reasoning")
        bodies = [(start if enable_thinking else answer, end) for _, start, answer, end in turns]
        enc = self.tok.encode(text, add_special_tokens=False)
        mask = [int(any(s < end and start < e for start, end in bodies)) for s, e in enc.offsets]
        return enc.ids, mask

    def template_turns(self, messages, enable_thinking):
        """render()'s (text, turns) for the checkpoint's template, from prefixes: this needs a template that renders
        a conversation's start the same whatever follows (ChatML templates such as Qwen2.5's do; Qwen3's does not,
        it drops earlier reasoning, which is why the port computes offsets of its own)."""
        text, turns = self.render_chat(messages, False, enable_thinking), []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt = self.render_chat(messages[:i], True, enable_thinking)
            end = text.find(IM_END, len(prompt))
            if not text.startswith(prompt) or end < 0:
                raise ValueError(f"messages[{i}]: the chat template renders the conversation before this assistant "
                                 f"turn differently once the turn follows, so its tokens cannot be found; train with "
                                 f"a checkpoint whose template is Qwen3's (data/qwen3_chat_template.jinja)")
            turns.append((i, len(prompt), len(prompt), end + len(IM_END)))
        return text, turns


# Conversations a checkpoint's template must render as the port does for the port to stand in for it: one per rule
# of the Qwen3 template (system first or not, reasoning from reasoning_content or inline, history reasoning dropped),
# each with and without thinking, with the generation prompt where the last turn is the user's.
PROBES = {
    "user": [{"role": "user", "content": "What is 2+2?"}],
    "system": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "reasoning": [{"role": "user", "content": "2*3?"},
                  {"role": "assistant", "content": "6", "reasoning_content": "2*3=6"}],
    "multi_turn": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "12+30?"},
                   {"role": "assistant", "content": "<think>\n12+30=42\n</think>\n\n42"},
                   {"role": "user", "content": "Times 2?"}, {"role": "assistant", "content": "84"},
                   {"role": "system", "content": "Now in words."}, {"role": "user", "content": "Again?"}],
}


def probe_settings(messages) -> list[dict]:
    prompt = messages[-1]["role"] == "user"
    return [dict(add_generation_prompt=prompt, enable_thinking=thinking) for thinking in (True, False)]


class Generation(jinja2.ext.Extension):
    """transformers' `{% generation %}...{% endgeneration %}` tags (which mark assistant tokens for its masks):
    rendered as their body, so that templates using them compile here too."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def compile_template(text: str) -> jinja2.Template:
    """A chat template compiled as transformers compiles it (chat_template_utils._compile_jinja_template): a sandbox
    with trim_blocks and lstrip_blocks, loop controls, raise_exception, strftime_now, and a tojson that keeps
    non-ASCII characters and does not escape HTML."""
    def raise_exception(message):
        raise jinja2.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(text)


def render(messages, add_generation_prompt, enable_thinking):
    """The official Qwen3 chat template (non-tool branch), in its order. Returns the text and, per assistant turn,
    (message index, start, answer, end): the character offsets where its body starts, where its content starts
    after the think block (== start when there is none), and where the body ends, just after <|im_end|>."""
    for i, m in enumerate(messages):
        if m["role"] not in ROLES or m.get("tool_calls"):
            raise ValueError(f"messages[{i}]: role {m['role']!r} / tool_calls are out of scope (tools are not "
                             f"supported); use roles {ROLES} only")
    text, turns = "", []
    if messages and messages[0]["role"] == "system":
        text += f"{IM_START}system\n{messages[0]['content']}{IM_END}\n"
    last_query = last_query_index(messages)
    for i, m in enumerate(messages):
        if m["role"] == "user" or (m["role"] == "system" and i > 0):
            text += f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n"
        elif m["role"] == "assistant":
            reasoning, content = split_reasoning(m)
            text += f"{IM_START}assistant\n"
            start = len(text)
            if i > last_query and (i == len(messages) - 1 or reasoning):
                thought = reasoning.strip("\n")
                text += f"{THINK}\n{thought}\n{END_THINK}\n\n"
                answer = len(text)
                text += content.lstrip("\n")
            else:
                answer = len(text)
                text += content
            text += IM_END
            turns.append((i, start, answer, len(text)))
            text += "\n"
    if add_generation_prompt:
        text += f"{IM_START}assistant\n"
        if not enable_thinking:
            text += EMPTY_THINK
    return text, turns


def last_query_index(messages) -> int:
    # The template's ns.last_query_index: the last user message that is not a tool response (a user message
    # wrapped in <tool_response> tags counts as one, so it is skipped here too, for parity).
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m["role"] == "user" and not (m["content"].startswith("<tool_response>")
                                        and m["content"].endswith("</tool_response>")):
            return i
    return len(messages) - 1


def split_reasoning(message) -> tuple[str, str]:
    """(reasoning, content) of an assistant message, as the template finds them."""
    content = message["content"]
    if message.get("reasoning_content") is not None:
        return message["reasoning_content"], content
    if END_THINK in content:
        reasoning = content.split(END_THINK)[0].rstrip("\n").split(THINK)[-1].lstrip("\n")
        return reasoning, content.split(END_THINK)[-1].lstrip("\n")
    return "", content


# ---------------------------------------------------------------------------------------------------------------
# The tiny tokenizer: Qwen3's pipeline (NFC, its split regex, byte-level BPE) with a 512-token vocabulary.

# Qwen2/3's pre-tokenizer regex (tokenizer.json "pre_tokenizer"): GPT-4-like, but `\p{N}` alone makes every digit
# its own pre-token, so numbers are spelled digit by digit (helps arithmetic).
QWEN_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
# Added tokens in Qwen3's order and with its flags: the three control tokens are special (skipped by
# decode(skip_special_tokens=True)); <think> and </think> are added but not special, so they survive decoding.
SPECIAL, ADDED = (ENDOFTEXT, IM_START, IM_END), (THINK, END_THINK)


def train_tiny_tokenizer(texts, vocab_size=512) -> HFTokenizer:
    """Byte-level BPE trained on `texts` (deterministic); vocab_size includes the 5 added tokens, which take the
    last ids as in Qwen3. Text between added tokens is what the trainer sees, as encode splits on them first."""
    tok = HFTokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    n_added = len(SPECIAL) + len(ADDED)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - n_added, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # all 256 bytes: any text
    between_added = re.compile("|".join(re.escape(t) for t in SPECIAL + ADDED))
    tok.train_from_iterator((piece for text in texts for piece in between_added.split(text)), trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED])
    if tok.get_vocab_size() != vocab_size:
        raise ValueError(f"the texts yield only {tok.get_vocab_size()} tokens; give more text or a smaller vocab_size")
    return tok


def tiny_corpus(n=600, seed=0) -> list[str]:
    """Chat-formatted toy conversations in the project's four domains, n per domain, from a fixed seed."""
    rng = random.Random(seed)
    names, things = ["Ann", "Bob", "Mia", "Leo", "Sara", "Tom"], ["apples", "books", "coins", "cards", "shells"]
    facts = [("Which planet is closest to the Sun?", "Mercury", ["Venus", "Mars", "Earth"]),
             ("Which gas do plants take in from the air?", "carbon dioxide", ["oxygen", "helium", "neon"]),
             ("What is the boiling point of water at sea level?", "100 degrees Celsius",
              ["50 degrees Celsius", "0 degrees Celsius", "212 degrees Celsius"]),
             ("Which organ pumps blood through the body?", "the heart", ["the lungs", "the liver", "the brain"]),
             ("What force pulls objects toward the Earth?", "gravity", ["friction", "magnetism", "tension"]),
             ("Which particle has a negative charge?", "the electron", ["the proton", "the neutron", "the nucleus"])]
    topics, rules = ["the sea", "a cat", "the city", "rain", "music", "a garden"], [
        ("Use only lowercase letters.", str.lower), ("Use only capital letters.", str.upper),
        ("End your answer with the word 'done'.", lambda s: s + " done"), ("Do not use any commas.", str)]

    def arithmetic():
        a, b, op = rng.randint(1, 999), rng.randint(1, 9), rng.choice("+-*")
        return a, b, op, {"+": a + b, "-": a - b, "*": a * b}[op]

    def math():
        a, b, op, c = arithmetic()
        who, what = rng.choice(names), rng.choice(things)
        verb = {"+": f"gets {b} more", "-": f"gives away {b}", "*": f"makes {b} times as many"}[op]
        q = f"{who} has {a} {what} and {verb}. How many {what} does {who} have now?"
        return q, f"{a}{op}{b}={c}.", f"A: {a}{op}{b}={c}. \\boxed{{{c}}}"

    def code():
        a, b, op, c = arithmetic()
        word = {"+": "plus", "-": "minus", "*": "times"}[op]
        q = f"Write a Python function f(x) that returns x plus {a} {word} {b}."
        return q, f"{a} {word} {b} is {c}.", f"```python\ndef f(x):\n    return x + {c}\n```"

    def science():
        question, right, wrong = rng.choice(facts)
        options = rng.sample([right] + wrong, 4)
        letters = "ABCD"
        q = question + "".join(f"\n{letter}. {o}" for letter, o in zip(letters, options))
        return q, f"The answer is {right}.", f"Answer: {letters[options.index(right)]}"

    def instruction():
        topic, (rule, apply) = rng.choice(topics), rng.choice(rules)
        answer = apply(f"Here is a short note about {topic}. It is calm and quiet today")
        return f"Write one sentence about {topic}. {rule}", "", answer + "."

    texts = []
    for make in (math, code, science, instruction):
        for _ in range(n):
            question, reasoning, answer = make()
            messages = [{"role": "user", "content": question},
                        {"role": "assistant", "content": answer, "reasoning_content": reasoning}]
            texts.append(render(messages, False, True)[0])
    return texts


def write_tiny(out: Path):
    """Write tokenizer.json and a tokenizer_config.json that lets transformers/vLLM load the tiny tokenizer."""
    tok = train_tiny_tokenizer(tiny_corpus())
    # The keys of Qwen3's tokenizer_config (eos <|im_end|>, pad <|endoftext|>, no BOS) and its chat template: the
    # project renders chats with render() and hands engines token ids, but transformers' apply_chat_template (and
    # lm-eval's --apply_chat_template) on any checkpoint we write needs the template.
    added = tok.get_added_tokens_decoder()
    config = {
        "add_bos_token": False, "add_prefix_space": False, "bos_token": None, "clean_up_tokenization_spaces": False,
        "eos_token": IM_END, "pad_token": ENDOFTEXT, "unk_token": None, "errors": "replace",
        "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer",
        "additional_special_tokens": [IM_START, IM_END],
        "added_tokens_decoder": {str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
                                          "rstrip": t.rstrip, "single_word": t.single_word, "special": t.special}
                                 for i, t in sorted(added.items())},
        "chat_template": QWEN3_TEMPLATE_FILE.read_text(),
    }
    write_atomic(out / "tokenizer.json", tok.to_str(pretty=True) + "\n")
    write_atomic(out / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-tiny", action="store_true", required=True,
                        help="train the tiny tokenizer on the built-in toy corpus and write it to --out")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "tiny")
    args = parser.parse_args()
    write_tiny(args.out)
    print(f"wrote {args.out}/tokenizer.json and tokenizer_config.json")
