"""Built-in toy domains: math, code, science and instruction following, small enough for the tiny model on a CPU.

    python -m data.toy     # regenerates data/toy/{sft,rl,eval}/{math,code,science,if}.jsonl, bit-identically

Each domain is a seeded generator of (prompt, verifier, reference answer). The splits are disjoint in prompts:
eval (500 per domain: 200 prompts measure accuracy only to +-3.5 points, docs/toy-notes.md), rl (prompts + verifier
fields) and sft (the same plus a short reference `response`: working in `reasoning_content`, the answer in
`content`, tens of tokens in all: the tiny model's generation budget is small).

What the study needs from the data (docs/toy-notes.md, measured on a 3M-parameter Qwen3): after SFT the model must solve
a moderate fraction, and RL must have something to find. RL showed a real effect only when the SFT answers held a
*rare-but-better* behaviour - one the SFT model samples now and then, that is far more often right - which RL can
select. So each reference answer is written in one of a few styles, drawn independently per answer:
- careful arithmetic (shared by math, code and science, written identically in all three): each column spelled
  out, units first, with its carry or borrow, `37+45: 7+5+0=12,3+4+1=8. 37+45=82.`, instead of `37+45=82.`
  Skill learnt in one domain can show up in the others - the transfer the paper studies.
- a domain's own better behaviour, used by that domain only:
  math     write each step of a two-step problem (`37+45=82. 82-8=74.` rather than `37+45-8=74.`), and the
           inverse operation when solving for x (`x=82-37.`);
  code     let Python do the arithmetic (`return x + (37 + 45)`, reasoning `Python computes 37+45.`);
  science  state the law before using it (`F=m*a.`);
  if       restate the rules before answering (`Rules: lowercase; no commas.`).
- otherwise the direct answer.
BEHAVIOURS holds a pattern that finds each behaviour in a response, to follow their shares through RL.

The tasks. Arithmetic is +, - (never below 0) and * by one digit; an operand has 1 to DIGITS digits (uniformly),
so a prompt set mixes easy and hard items.
  math     word problems with one operation, or two (on operands a digit shorter, to keep answers short), and
           "find x" (x+b=c, x-b=c); answers `\\boxed{n}`.
  code     a function f(x) (call-based tests) or a stdin program (stdin tests) computing x plus, times or minus
           "the sum/difference/product of a and b"; four tests each.
  science  multiple choice A-D: a quantity from a formula (d=v*t, F=m*a, series resistance, ...) with units; the
           distractors are the usual slips (off by 1 to 4, the wrong operation); each option sits in the slot of
           its units digit mod 4 (science_item says why). The working ends naming the option (`225 is B.`); answers
           `Answer: X`.
  if       a note about a topic under 2 to 4 IFEval constraints (case, commas, end phrase, keyword, forbidden
           word, word count, JSON, title, quotation, postscript), with kwargs; instruction ids of rewards/ifeval.py.
           Word-count limits are set so that only the right length passes: a short, medium or long note. A draw
           whose answer the official checks would reject (langdetect misreads a few short all-lowercase notes) is
           drawn again.

Knobs: DIGITS (difficulty), CAREFUL and SPECIFIC (the shares of the two better behaviours in the SFT answers),
IF_RULES (IF difficulty), SIZES. Changing one changes the frozen files: regenerate them and re-measure.
"""
import argparse
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from data.record import Record, write_records
from rewards import DOMAINS, ifeval

OUT = Path(__file__).resolve().parent / "toy"
SIZES = {"eval": 500, "rl": 1000, "sft": 2000}  # records per domain
DIGITS = 2        # most digits in an operand (3 left math/code at 8/7% after 4 SFT epochs over four domains)
CAREFUL = 0.3     # share of SFT answers with careful arithmetic (docs/toy-notes.md: 30% rare enough, and selectable)
SPECIFIC = 0.3    # share of SFT answers with the domain's own better behaviour
IF_RULES = (2, 4)  # IF: fewest and most constraints per prompt (1 to 3 left IF at 90% after SFT: no headroom)

BEHAVIOURS = {
    "careful": re.compile(r"\d: \d+[+*-]\d[+-]\d=\d"),  # the first column: 37+45: 7+5+0=12 (12-5-0=7, 7*4+0=28)
    # a step on the last step's result (37+45=82. 82-8), or the inverse operation written out (x=82-37.)
    "math_steps": re.compile(r"(?<![\d+*-])\d+[+*-]\d+=(\d+)\. \1[+*-]|^x=\d+[+-]\d+\.", re.M),
    "code_python": re.compile(r"Python computes"),
    "science_law": re.compile(r"^[A-Za-z]+=[A-Za-z]\w*[+*-][A-Za-z]\w*\. ", re.M),  # d=v*t.
    "if_rules": re.compile(r"^Rules: ", re.M),
}


@dataclass
class Item:
    prompt: str
    verifier: dict
    respond: Callable[[bool, bool], dict]  # (careful, specific) -> {"content", "reasoning_content"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for (split, domain), records in build(args.seed).items():
        path = args.out / split / f"{domain}.jsonl"
        write_records(path, records)
        print(f"wrote {len(records):5d} records to {path}")


def build(seed: int = 0) -> dict[tuple[str, str], list[Record]]:
    """{(split, domain): records}. One prompt stream per domain, dealt to eval, rl, sft in turn, duplicates
    dropped, so the splits never share a prompt; the styles of SFT answers come from a second stream."""
    out = {}
    for domain in DOMAINS:
        prompts, styles = random.Random(f"{seed}/{domain}/prompts"), random.Random(f"{seed}/{domain}/styles")
        seen = set()
        for split, size in SIZES.items():
            records = out[split, domain] = []
            while len(records) < size:
                item = GENERATORS[domain](prompts)
                if item.prompt in seen:
                    continue
                seen.add(item.prompt)
                response = None
                if split == "sft":
                    careful, specific = styles.random() < CAREFUL, styles.random() < SPECIFIC
                    response = item.respond(careful, specific)
                records.append(Record(id=f"toy-{domain}-{split}-{len(records):04d}", domain=domain,
                                      messages=[{"role": "user", "content": item.prompt}],
                                      verifier=item.verifier, response=response, source="toy"))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Arithmetic, shared by math, code and science


def operand(rng: random.Random, most: int = DIGITS) -> int:
    digits = rng.randint(1, most)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def operands(rng: random.Random, op: str, most: int = DIGITS) -> tuple[int, int]:
    a = operand(rng, most)
    b = rng.randint(2, 9) if op == "*" else operand(rng, most)
    return (max(a, b), min(a, b)) if op == "-" else (a, b)


def apply(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def working(a: int, op: str, b: int, careful: bool) -> str:
    """`37+45=82.`, or with careful=True the columns first: `37+45: 7+5+0=12,3+4+1=8. 37+45=82.`"""
    line = f"{a}{op}{b}={apply(a, op, b)}."
    return f"{a}{op}{b}: {','.join(columns(a, op, b))}. {line}" if careful else line


def columns(a: int, op: str, b: int) -> list[str]:
    """School arithmetic, units first: each column with the carry (or borrow) it takes in."""
    xs, ys = str(a)[::-1], str(b)[::-1]
    carry, out = 0, []
    for i in range(len(xs) if op == "*" else max(len(xs), len(ys))):
        x, y = int(xs[i]) if i < len(xs) else 0, int(ys[i]) if i < len(ys) else 0
        if op == "*":  # b has one digit
            v = x * b + carry
            out.append(f"{x}*{b}+{carry}={v}")
            carry = v // 10
        elif op == "+":
            v = x + y + carry
            out.append(f"{x}+{y}+{carry}={v}")
            carry = v // 10
        else:  # a >= b: borrow ten from the next column when this one would go below 0
            borrow = int(x - y - carry < 0)
            out.append(f"{x + 10 * borrow}-{y}-{carry}={x + 10 * borrow - y - carry}")
            carry = borrow
    return out


# ---------------------------------------------------------------------------------------------------------------
# Math: word problems in one or two operations, and find-x


NAMES = ["Ann", "Bob", "Mia", "Leo", "Sara", "Tom", "Eva", "Max"]
THINGS = ["apples", "books", "coins", "cards", "shells", "stamps", "pens", "eggs"]
VERBS = {"+": "gets {} more", "-": "gives away {}", "*": "makes {} times as many"}


def math_item(rng: random.Random) -> Item:
    kind = rng.choices(["one", "two", "x"], weights=[2, 2, 1])[0]
    if kind == "x":
        return find_x(rng)
    name, things = rng.choice(NAMES), rng.choice(THINGS)
    op1 = rng.choice("+-*")
    most = DIGITS if kind == "one" else max(1, DIGITS - 1)  # two steps: one digit less, to keep answers short
    a, b = operands(rng, op1, most)
    steps = [(a, op1, b)]
    if kind == "two":
        v = apply(a, op1, b)
        op2 = rng.choice("+-*" if v > 0 else "+*")  # the count never goes below 0
        c = rng.randint(2, 9) if op2 == "*" else operand(rng, most)
        if op2 == "-" and c > v:
            c = rng.randint(1, v)
        steps.append((v, op2, c))
    verbs = [VERBS[op].format(y) for _, op, y in steps]
    story = verbs[0] if kind == "one" else f"{verbs[0]}, and then {verbs[1]}"
    prompt = f"{name} has {a} {things} and {story}. How many {things} does {name} have now?"
    answer = apply(*steps[-1])

    def respond(careful: bool, specific: bool) -> dict:
        if kind == "one" or careful or specific:  # careful arithmetic is step by step by nature
            reasoning = " ".join(working(*step, careful) for step in steps)
        else:  # both operations at once: harder for a small model than two short steps
            (_, op2, c) = steps[1]
            first = f"({a}{op1}{b})" if op2 == "*" and op1 != "*" else f"{a}{op1}{b}"
            reasoning = f"{first}{op2}{c}={answer}."
        return {"content": f"\\boxed{{{answer}}}", "reasoning_content": reasoning}

    return Item(prompt, {"answer": str(answer)}, respond)


def find_x(rng: random.Random) -> Item:
    op = rng.choice("+-")
    x, b = operand(rng), operand(rng)
    if op == "-" and b > x:
        x, b = b, x
    c = apply(x, op, b)
    inverse = "-" if op == "+" else "+"

    def respond(careful: bool, specific: bool) -> dict:
        if careful or specific:
            reasoning = f"x={c}{inverse}{b}. {working(c, inverse, b, careful)}"
        else:
            reasoning = f"x={x}."
        return {"content": f"\\boxed{{{x}}}", "reasoning_content": reasoning}

    return Item(f"Find x if x{op}{b}={c}.", {"answer": str(x)}, respond)


# ---------------------------------------------------------------------------------------------------------------
# Code: f(x) or a stdin program; x combined with a constant that needs arithmetic


PHRASES = {"+": "the sum of {} and {}", "-": "the difference of {} and {}", "*": "the product of {} and {}"}
SHAPES = [("x plus {}", "x + {}", lambda x, c: x + c), ("{} minus x", "{} - x", lambda x, c: c - x),
          ("x times {}", "x * {}", lambda x, c: x * c)]  # (prompt words, Python, value)


def code_item(rng: random.Random) -> Item:
    op = rng.choice("+-*")
    a, b = operands(rng, op)
    words, shape, value = rng.choice(SHAPES)
    what = words.format(PHRASES[op].format(a, b))
    stdin = rng.random() < 0.3
    if stdin:
        prompt = f"Write a Python program that reads an integer x and prints {what}."
    else:
        prompt = f"Write a Python function f(x) that returns {what}."
    xs = rng.sample(range(0, 50), 4)
    outputs = [str(value(x, apply(a, op, b))) for x in xs]
    tests = {"inputs": [str(x) for x in xs], "outputs": outputs, "fn_name": None if stdin else "f"}

    def respond(careful: bool, specific: bool) -> dict:
        if specific:
            reasoning, constant = f"Python computes {a}{op}{b}.", f"({a} {op} {b})"
        else:
            reasoning, constant = working(a, op, b, careful), str(apply(a, op, b))
        expression = shape.format(constant)
        body = f"x = int(input())\nprint({expression})" if stdin else f"def f(x):\n    return {expression}"
        return {"content": f"```python\n{body}\n```", "reasoning_content": reasoning}

    return Item(prompt, {"tests": tests}, respond)


# ---------------------------------------------------------------------------------------------------------------
# Science: multiple choice on a quantity from a formula, with units


LAWS = [  # (question, law, operation, unit); "*" laws take a one-digit b
    ("A cart moves at {a} m/s for {b} s. How far does it go?", "d=v*t", "*", "m"),
    ("What force gives a {a} kg mass an acceleration of {b} m/s^2?", "F=m*a", "*", "N"),
    ("What is the momentum of a {a} kg cart moving at {b} m/s?", "p=m*v", "*", "kg m/s"),
    ("A liquid has a density of {a} g/L. What is the mass of {b} L of it?", "m=d*V", "*", "g"),
    ("Two resistors of {a} ohm and {b} ohm are in series. What is the total resistance?", "R=R1+R2", "+", "ohm"),
    ("One battery holds {a} J and another holds {b} J. How much energy do they hold in all?", "E=E1+E2", "+", "J"),
    ("Water warms from {b} to {a} degrees. By how many degrees does it warm?", "dT=T2-T1", "-", "degrees"),
    ("Forces of {a} N and {b} N pull in opposite directions. What is the net force?", "F=F1-F2", "-", "N"),
]


def science_item(rng: random.Random) -> Item:
    question, law, op, unit = rng.choice(LAWS)
    a, b = operands(rng, op)
    value = apply(a, op, b)
    # The distractors are the usual slips (off by 1 to 4, the wrong operation). The options sit in the slot named by
    # their units digit mod 4 (A: 0, 4, 8; B: 1, 5, 9; C: 2, 6; D: 3, 7), so the letter follows from the computed
    # value by one token. The tiny model does not learn to find a value among the options within the SFT budget:
    # with options in random order it named the option holding its own computed value 7 times in 32, chance, with
    # any layout tried (letter before or after the value, a walk over the options).
    slips = [value + d for d in (1, -1, 2, -2, 3, -3, 4, -4)] + [apply(a, o, b) for o in "+-*" if o != op]
    rng.shuffle(slips)
    slots = {value % 10 % 4: value}
    for s in slips:
        if s > 0 and s % 10 % 4 not in slots:
            slots[s % 10 % 4] = s
    values = [slots[i] for i in range(4)]
    options = [f"{v} {unit}" for v in values]
    letter = "ABCD"[values.index(value)]
    prompt = question.format(a=a, b=b) + "".join(f"\n{L}. {o}" for L, o in zip("ABCD", options))

    def respond(careful: bool, specific: bool) -> dict:
        reasoning = (f"{law}. " if specific else "") + working(a, op, b, careful) + f" {value} is {letter}."
        return {"content": f"Answer: {letter}", "reasoning_content": reasoning}

    return Item(prompt, {"options": options, "answer": letter}, respond)


# ---------------------------------------------------------------------------------------------------------------
# Instruction following: a short note about a topic, under IFEval constraints


TOPICS = ["the sea", "a cat", "the city", "rain", "music", "a garden", "the moon", "a dog", "the park", "snow",
          "a river", "the market", "a book", "the forest", "a train", "winter", "summer", "a bird", "the farm",
          "the sky"]
SYNONYMS = {"calm": "still", "quiet": "silent", "warm": "mild", "bright": "sunny", "cold": "cool", "soft": "gentle",
            "loud": "noisy", "busy": "full", "small": "little", "green": "fresh"}
FILLERS = ["I like it.", "It is nice.", "I love it.", "It is fun.", "It makes me happy.", "I see it often."]
KEYWORDS = ["home", "light", "peace", "friends", "time", "color", "water", "sound"]
END_PHRASES = ["That is all.", "Thank you.", "The end.", "See you."]
POSTSCRIPTS = ["I wrote this today.", "More soon.", "Thanks for reading."]
# Rules that cannot hold together, or whose checks break each other (an end phrase must come last; JSON must be
# the whole answer).
CLASHES = [("lower", "upper"), ("fewer", "more"), ("end", "postscript"), ("json", "end"), ("json", "title"),
           ("json", "quote"), ("json", "postscript")]


def if_item(rng: random.Random) -> Item:
    topic = rng.choice(TOPICS)
    adjectives = rng.sample(list(SYNONYMS), 2)
    fillers = rng.sample(FILLERS, 2)
    rules = []
    for name in rng.sample(list(RULES), rng.randint(*IF_RULES)):
        if all((name, r) not in CLASHES and (r, name) not in CLASHES for r in rules):
            rules.append(name)
    rules.sort(key=list(RULES).index)  # one order for prompt, answer and plan
    args = {"forbidden": rng.choice(adjectives), "keyword": rng.choice(KEYWORDS), "end": rng.choice(END_PHRASES),
            "postscript": rng.choice(POSTSCRIPTS)}

    def note(fill: int) -> str:
        """The answer: the first sentence, `fill` filler sentences, and every rule followed."""
        first = f"{topic[0].upper()}{topic[1:]} is {adjectives[0]}, and it is {adjectives[1]}."
        if "forbidden" in rules:
            first = first.replace(args["forbidden"], SYNONYMS[args["forbidden"]])
        text = " ".join([first] + ([f"I think of {args['keyword']}."] if "keyword" in rules else []) + fillers[:fill])
        if "comma" in rules:
            text = text.replace(",", "")
        if "postscript" in rules:
            text += "\nP.S. " + args["postscript"]
        if "end" in rules:
            text += " " + args["end"]
        if "title" in rules:
            text = f"<<{topic}>>\n{text}"
        if "json" in rules:
            text = json.dumps({"note": text})
        if "quote" in rules:
            text = f'"{text}"'
        return text.lower() if "lower" in rules else text.upper() if "upper" in rules else text

    # A word-count limit lies between the counts of two lengths of the finished note, so that only the length
    # asked for passes: "fewer than" between short (no filler) and medium (one), "at least" between medium and
    # long (two). Without a limit the note is medium.
    fill = 0 if "fewer" in rules else 2 if "more" in rules else 1
    words = [count_words(note(n)) for n in (0, 1, 2)]
    args["fewer"] = rng.randint(words[0] + 1, words[1])
    args["more"] = rng.randint(words[1] + 1, words[2])
    prompt = f"Write a short note about {topic}. " + " ".join(RULES[r][0].format(args.get(r)) for r in rules)
    verifier = {"instruction_id_list": [RULES[r][1] for r in rules],
                "kwargs": [RULES[r][2](args.get(r)) for r in rules]}
    if ifeval.verify(note(fill), verifier)[0] != 1.0:
        # langdetect takes a few short English notes in all lowercase (or capitals) for another language, and
        # the official english_lowercase check then fails them: draw again.
        return if_item(rng)

    def respond(careful: bool, specific: bool) -> dict:
        plan = "Rules: " + "; ".join(RULES[r][3].format(args.get(r)) for r in rules) + "." if specific else ""
        return {"content": note(fill), "reasoning_content": plan}

    return Item(prompt, verifier, respond)


def count_words(text: str) -> int:
    return len(re.findall(r"\w+", text))  # IFEval's count_words: nltk RegexpTokenizer(r"\w+")


RULES = {  # name: (prompt text, IFEval instruction id, kwargs from the drawn argument, how a plan says it)
    "forbidden": ("Do not use the word '{}'.", "keywords:forbidden_words", lambda w: {"forbidden_words": [w]},
                  "not '{}'"),
    "keyword": ("Include the word '{}'.", "keywords:existence", lambda w: {"keywords": [w]}, "say '{}'"),
    "fewer": ("Use fewer than {} words.", "length_constraints:number_words",
              lambda n: {"num_words": n, "relation": "less than"}, "under {} words"),
    "more": ("Use at least {} words.", "length_constraints:number_words",
             lambda n: {"num_words": n, "relation": "at least"}, "{} words or more"),
    "comma": ("Do not use any commas.", "punctuation:no_comma", lambda _: {}, "no commas"),
    "postscript": ("End with a postscript starting with P.S.", "detectable_content:postscript",
                   lambda _: {"postscript_marker": "P.S."}, "P.S. at the end"),
    "end": ("End your answer with the phrase '{}'.", "startend:end_checker", lambda p: {"end_phrase": p},
            "end with '{}'"),
    "title": ("Give it a title in double angular brackets, like <<title>>.", "detectable_format:title",
              lambda _: {}, "a <<title>>"),
    "json": ("Wrap your whole answer in JSON.", "detectable_format:json_format", lambda _: {}, "JSON"),
    "quote": ("Wrap your whole answer in double quotes.", "startend:quotation", lambda _: {}, "in quotes"),
    "lower": ("Use only lowercase letters.", "change_case:english_lowercase", lambda _: {}, "lowercase"),
    "upper": ("Use only capital letters.", "change_case:english_capital", lambda _: {}, "capitals"),
}

GENERATORS = {"math": math_item, "code": code_item, "science": science_item, "if": if_item}

if __name__ == "__main__":
    main()
