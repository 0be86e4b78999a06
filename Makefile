# ctx-inpaint: every target but `install` uses the virtual environment in .venv/
PY := .venv/bin/python
ARGS ?=

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-23s %s\n", $$1, $$2}'

install: ## Create .venv/ and install the package (editable) with the dev, onnx, demo and docs extras
	python3 -m venv .venv
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev,onnx,demo,docs]"

# The web demo and REST API (issue 13; README "Demo"): the page on 127.0.0.1:8000, its load test and screenshot.
demo: ## Serve the web demo and REST API on http://127.0.0.1:8000 (shipped models); ARGS="--port 9000 --checkpoint PATH ..."
	$(PY) -m ctx_inpaint.demo $(ARGS)

demo-loadtest: ## Load-test the API (50 requests from 4 threads, every response checked); figures in experiments/demo/loadtest.json
	$(PY) -m tools.loadtest --requests 50 --threads 4 --out experiments/demo/loadtest.json $(ARGS)

demo-screenshot: ## Redraw experiments/demo/screenshot.png in headless Chromium (apt-get install chromium chromium-driver)
	$(PY) -m experiments.demo.screenshot --out experiments/demo/screenshot.png

EXPERIMENT ?= campus_unet
train: ## Train EXPERIMENT= (default campus_unet: the 29-minute CPU recipe) on the embedded photos; Hydra overrides in ARGS=
	$(PY) -m ctx_inpaint.train +experiment=$(EXPERIMENT) $(ARGS)

test: ## Run the test suite
	$(PY) -m pytest -q $(ARGS)

docs: ## Build the documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link or reference fails
	$(PY) -m mkdocs build --strict

docs-serve: ## Serve the documentation on http://127.0.0.1:8001 (mkdocs.yml's dev_addr), rebuilt on every edit; ARGS="-a HOST:PORT"
	$(PY) -m mkdocs serve $(ARGS)

lint: ## Ruff lint and format check of the package, the tests and tools/
	$(PY) -m ruff check ctx_inpaint tests tools
	$(PY) -m ruff format --check ctx_inpaint tests tools

format: ## Apply ruff formatting and safe fixes (package, tests, tools/)
	$(PY) -m ruff check --fix ctx_inpaint tests tools
	$(PY) -m ruff format ctx_inpaint tests tools

SWEEP ?= all
BUDGET ?= cpu
SEEDS ?= 1
SEED_LIST := $(shell seq -s, 42 $$((41 + $(SEEDS))))
SWEEP_DIR ?=
REPORT_OUT ?= experiments/ablations
ablations: ## Run an ablation sweep (Hydra multirun): make ablations SWEEP=all BUDGET=cpu SEEDS=3 [ARGS=...]
	@snapshot=$$(mktemp -d -t ctx_conf_XXXXXX) && cp -r conf/. $$snapshot/ && \
	echo "[ctx-inpaint] configs frozen in $$snapshot for the whole sweep" && \
	$(PY) -m ctx_inpaint.train --config-path $$snapshot -m +sweep=$(SWEEP) +budget=$(BUDGET) seed=$(SEED_LIST) $(ARGS)

report: ## Markdown report of a sweep: make report SWEEP_DIR=logs/multiruns/<stamp> [REPORT_OUT=experiments/ablations]
	@test -n "$(SWEEP_DIR)" || { echo "make report: set SWEEP_DIR=logs/multiruns/<stamp>_<pid>"; exit 2; }
	$(PY) -m ctx_inpaint.report $(SWEEP_DIR) --out $(REPORT_OUT) \
		$(if $(wildcard $(REPORT_OUT)/NOTES.md),--notes $(REPORT_OUT)/NOTES.md,)

# The committed report (experiments/ablations/): `make ablations SWEEP=all BUDGET=cpu SEEDS=3` on the 2-core CPU.
ABLATIONS_SWEEP ?= logs/multiruns/2026-12-02_05-41-31-360940_24515
ablations-report: ## Regenerate experiments/ablations/report.md and its PNGs from ABLATIONS_SWEEP (the committed sweep)
	$(MAKE) report SWEEP_DIR=$(ABLATIONS_SWEEP) REPORT_OUT=experiments/ablations

BENCH_JPEGS ?= /tmp/ctx_bench_jpegs
BENCH_DATA := data=folder data.root=$(BENCH_JPEGS)
BENCH_OUT ?= experiments/perf
bench-data: ## Write 2,000 random Paris-size (936x537) JPEGs to BENCH_JPEGS (not committed) and prepare their cache
	$(PY) -m tools.jpegs $(BENCH_JPEGS) --count 2000
	$(PY) -m ctx_inpaint.prepare $(BENCH_DATA) hydra.run.dir=$${TMPDIR:-/tmp}/ctx_prepare_run

bench: bench-data ## Benchmark l2_0999 and l2_1 on those JPEGs (table, then a JSON line; saved in BENCH_OUT); ARGS=--sizes sweeps batch
	$(PY) -m ctx_inpaint.bench +experiment=l2_0999 $(BENCH_DATA) bench.out_json=$(BENCH_OUT)/bench_l2_0999.json $(ARGS)
	$(PY) -m ctx_inpaint.bench +experiment=l2_1 $(BENCH_DATA) bench.out_json=$(BENCH_OUT)/bench_l2_1.json $(ARGS)
	$(PY) -m tools.bench_summary $(BENCH_OUT)

# Issue 14's bar: three consecutive runs of `make bench`'s l2_0999 benchmark agree within 10 % on every ratio.
BENCH3_DIR := $(BENCH_OUT)/bench_three_runs
bench3: bench-data ## make bench's l2_0999 benchmark 3 times in a row; each ratio's 3 values and PASS/FAIL (10 %) in BENCH_OUT/bench_three_runs.md
	mkdir -p $(BENCH3_DIR)
	for i in 1 2 3; do \
		$(PY) -m ctx_inpaint.bench +experiment=l2_0999 $(BENCH_DATA) bench.out_json=$(BENCH3_DIR)/run$$i.json $(ARGS) || exit 1; \
	done
	$(PY) -m tools.agreement $(BENCH_OUT)/bench_three_runs.md $(BENCH3_DIR)/run1.json $(BENCH3_DIR)/run2.json $(BENCH3_DIR)/run3.json

# Time to quality of `make train` (issue 14): two commits side by side, one core each, then the timeline.
TTQ_BEFORE ?= 8517430
TTQ_AFTER ?= HEAD
TTQ_DIR ?= logs/ttq/side_by_side_1
TTQ_RECORD ?= experiments/perf/time_to_quality/make_train
TTQ_TITLE ?= make train (campus_cpu)
time-to-quality: ## make train at TTQ_BEFORE and TTQ_AFTER side by side (29 min; overrides in ARGS), then the timeline in TTQ_RECORD
	flock /tmp/ctx_heavy.lock experiments/perf/time_to_quality/run_side_by_side.sh $(TTQ_BEFORE) $(TTQ_AFTER) $(TTQ_DIR) $(ARGS)
	$(MAKE) time-to-quality-report TTQ_DIR=$(TTQ_DIR) TTQ_RECORD=$(TTQ_RECORD) TTQ_TITLE="$(TTQ_TITLE)"

time-to-quality-report: ## Regenerate TTQ_RECORD/timeline.{md,json,png} from the runs in TTQ_DIR
	$(PY) experiments/perf/time_to_quality/timeline.py $(TTQ_DIR) --record $(TTQ_RECORD) --title "$(TTQ_TITLE)"

BF16_DIR ?= logs/ttq/bf16_vs_fp32
BF16_EPOCHS ?= 16
bf16-quality: ## make train's recipe (EXPERIMENT) in float32 and bf16-mixed side by side (one core each, the same BF16_EPOCHS epochs, no time cap): experiments/perf/bf16_quality
	BEFORE_EXPERIMENT=$(EXPERIMENT) AFTER_EXPERIMENT=$(EXPERIMENT) BEFORE_ARGS="trainer.precision=32-true" \
		AFTER_ARGS="trainer.precision=bf16-mixed" flock /tmp/ctx_heavy.lock experiments/perf/time_to_quality/run_side_by_side.sh \
		HEAD HEAD $(BF16_DIR) trainer.max_time=null trainer.max_epochs=$(BF16_EPOCHS) $(ARGS)
	$(MAKE) time-to-quality-report TTQ_DIR=$(BF16_DIR) TTQ_RECORD=experiments/perf/bf16_quality \
		TTQ_TITLE="make train ($(EXPERIMENT), $(BF16_EPOCHS) epochs) in float32 (before) and bf16-mixed (after), the same steps"

SPEEDUP_DIR ?= logs/ttq/make_train_speedup
train-speedup: ## The old make train (campus_cpu, float32) beside the new (EXPERIMENT at trainer.precision auto), 29 min, one core each: experiments/perf/time_to_quality/make_train_speedup
	BEFORE_EXPERIMENT=campus_cpu AFTER_EXPERIMENT=$(EXPERIMENT) BEFORE_ARGS="trainer.precision=32-true" flock /tmp/ctx_heavy.lock \
		experiments/perf/time_to_quality/run_side_by_side.sh HEAD HEAD $(SPEEDUP_DIR) $(ARGS)
	$(MAKE) time-to-quality-report TTQ_DIR=$(SPEEDUP_DIR) TTQ_RECORD=experiments/perf/time_to_quality/make_train_speedup \
		TTQ_TITLE="make train: campus_cpu in float32 (before) and $(EXPERIMENT) at precision auto (after)"

allocator-ab: ## keep_freed_memory on and off, alternated process by process (experiments/perf/time_to_quality/allocator_ab.json)
	flock /tmp/ctx_heavy.lock $(PY) experiments/perf/time_to_quality/allocator_ab.py $(ARGS)

reliability-memory: ## Peak memory of issue 24's hostile inpainting inputs (the After half of experiments/reliability/inference_memory.txt); ARGS="--only CASE ..."
	flock /tmp/ctx_heavy.lock $(PY) experiments/reliability/inference_memory.py $(ARGS)

GPU_CHECK_OUT ?= experiments/perf/gpu
gpu-check: ## On a CUDA machine (<= 8 min): bench trainer=gpu at batch 64/256, 300 steps of l2_0999 and random_region, DDP, kill/resume, inpaint/evaluate on cuda
	$(PY) -m tools.gpu_check --out $(GPU_CHECK_OUT) --device cuda $(ARGS)

CKPT ?=
EVAL_OUT ?= logs/eval
evaluate: ## Score CKPT= and the classical baselines on the embedded held-out photos: make evaluate CKPT=path [EVAL_OUT=dir] [ARGS=...]
	@test -n "$(CKPT)" || { echo "make evaluate: set CKPT=path/to/checkpoint.ckpt"; exit 2; }
	$(PY) -m ctx_inpaint.evaluate --checkpoint $(CKPT) --out $(EVAL_OUT) --grid 8 $(ARGS)

# The quality bar (issue 4, experiments/quality/README.md): `make train` (campus_cpu) against the classical
# baselines, plus the earlier runs (the paper setting's default run, the tuned run without the SSIM term).
QUALITY_RUN ?= logs/runs/quality_campus_cpu
QUALITY_DEFAULT ?= logs/runs/default_make_train/checkpoints/last.ckpt
QUALITY_TUNED ?= logs/runs/quality_tuned/checkpoints/last.ckpt
QUALITY_TUNING := model.encoder.width=32 model.decoder.width=32 model.discriminator.width=32 data.batch_size=16 \
	masks.overlap_weight=1 optim.g_lr_mult=1 \
	'optim.scheduler={_target_:torch.optim.lr_scheduler.CosineAnnealingLR,_partial_:true,T_max:60}' \
	trainer.max_epochs=60 trainer.max_time=00:00:29:00 callbacks.model_checkpoint.monitor=null \
	callbacks.model_checkpoint.save_last=link callbacks.model_checkpoint.last_every_s=null
quality: ## Regenerate experiments/quality/ tables: evaluate QUALITY_RUN, QUALITY_DEFAULT and QUALITY_TUNED against the baselines
	$(PY) -m ctx_inpaint.evaluate --checkpoint $(QUALITY_RUN)/checkpoints/last.ckpt --out experiments/quality/campus_cpu --grid 8
	mkdir -p experiments/quality/campus_cpu/run
	cp $(QUALITY_RUN)/metrics.csv $(QUALITY_RUN)/config_resolved.yaml $(QUALITY_RUN)/run_status.json experiments/quality/campus_cpu/run/
	cp $(QUALITY_RUN)/.hydra/overrides.yaml experiments/quality/campus_cpu/run/
	$(if $(wildcard $(QUALITY_DEFAULT)),$(PY) -m ctx_inpaint.evaluate --checkpoint $(QUALITY_DEFAULT) --out experiments/quality/default_l2_0999 --grid 8,@echo "make quality: no $(QUALITY_DEFAULT); experiments/quality/default_l2_0999 kept as it is")
	$(if $(wildcard $(QUALITY_TUNED)),$(PY) -m ctx_inpaint.evaluate --checkpoint $(QUALITY_TUNED) --out experiments/quality/tuned_l2_0999 --grid 8,@echo "make quality: no $(QUALITY_TUNED); experiments/quality/tuned_l2_0999 kept as it is")
	$(PY) experiments/quality/blur_reference.py
	$(PY) experiments/quality/ssim_by_ring.py campus_cpu=$(QUALITY_RUN)/checkpoints/last.ckpt \
		$(if $(wildcard $(QUALITY_TUNED)),tuned_l2_0999=$(QUALITY_TUNED),)
	$(PY) experiments/quality/summarize.py

quality-train: ## Re-run campus_cpu (the paper's setting in 29 min on 2 CPU cores, under the heavy lock) into QUALITY_RUN
	flock /tmp/ctx_heavy.lock $(MAKE) train EXPERIMENT=campus_cpu ARGS="hydra.run.dir=$(QUALITY_RUN)"

# make train's recipe (campus_unet) against OpenCV on the centre hole: the campus hold-out, other places and the
# cross-source photos (issue 27: ahead of both fills on the cross-source set), into experiments/quality/campus_unet/.
UNET_RUN ?= logs/runs/quality_campus_unet
quality-unet: ## Score UNET_RUN (make train's campus_unet) and OpenCV on holdout, places, cross: experiments/quality/campus_unet/
	for images in holdout places cross; do \
		$(PY) -m ctx_inpaint.evaluate --checkpoint $(UNET_RUN)/checkpoints/last.ckpt --mask-sets center -i embedded:$$images \
			--out experiments/quality/campus_unet/$$images --grid 6 $(ARGS) || exit 1; \
	done
	mkdir -p experiments/quality/campus_unet/run
	cp $(UNET_RUN)/metrics.csv $(UNET_RUN)/config_resolved.yaml $(UNET_RUN)/run_status.json $(UNET_RUN)/.hydra/overrides.yaml \
		experiments/quality/campus_unet/run/

quality-train-unet: ## Re-run make train (campus_unet, 29 min, under the heavy lock) into UNET_RUN
	flock /tmp/ctx_heavy.lock $(MAKE) train EXPERIMENT=campus_unet ARGS="hydra.run.dir=$(UNET_RUN)"

quality-train-tuned: ## Re-run the tuned l2_0999 training without the SSIM term (29 min) into logs/runs/quality_tuned
	flock /tmp/ctx_heavy.lock $(PY) -m ctx_inpaint.train +experiment=l2_0999 logger=csv $(QUALITY_TUNING) \
		hydra.run.dir=logs/runs/quality_tuned

quality-probes: ## Re-run the 5-minute probes (experiments/quality/probe_ssim.sh, probe_cpu.sh)
	PY=$(PY) bash experiments/quality/probe_ssim.sh
	PY=$(PY) bash experiments/quality/probe_cpu.sh

bench-attempts: bench-data ## Re-time every speed-up tried (experiments/perf/run_attempts.sh); ATTEMPTS="name ..." for some
	PY=$(PY) BENCH_JPEGS=$(BENCH_JPEGS) OUT=$(BENCH_OUT)/attempts bash experiments/perf/run_attempts.sh
	$(PY) -m tools.bench_summary $(BENCH_OUT)

bench-ab: ## Paired A/B timing of each speed option against the defaults (experiments/perf/run_ab.sh); AB="name ..." for some
	PY=$(PY) OUT=$(BENCH_OUT)/ab bash experiments/perf/run_ab.sh
	$(PY) -m tools.bench_summary $(BENCH_OUT)

bench-precision: ## Compare float32 and bf16-mixed gradients and 30 training steps of l2_0999 (experiments/perf/)
	$(PY) -m ctx_inpaint.benchmark.precision_check +experiment=l2_0999 +check_steps=30 \
		+out_json=$(BENCH_OUT)/precision_check_l2_0999.json hydra.run.dir=$${TMPDIR:-/tmp}/ctx_precision_run

bench-contention: ## Thread policies alone and beside one busy process (~30 min): experiments/perf/threads/contention.{json,log}
	mkdir -p experiments/perf/threads
	$(PY) -m ctx_inpaint.bench +experiment=campus_cpu 'bench.measure=[contention]' bench.contention.steps=80 \
		bench.out_json=experiments/perf/threads/contention.json hydra.run.dir=$${TMPDIR:-/tmp}/ctx_contention \
		$(ARGS) 2>&1 | tee experiments/perf/threads/contention.log
	$(PY) experiments/perf/threads/summarize.py

bench-peak: ## The peak search and fp32/bf16 fractions of l2_0999's steps on every core (thread policy spin; ~10 min): experiments/perf/peak/l2_0999{,_fp32}.{json,txt}, the default precision, then float32 with bf16 beside
	mkdir -p experiments/perf/peak
	CTX_INPAINT_THREAD_POLICY=spin $(PY) -m ctx_inpaint.bench +experiment=l2_0999 'bench.measure=[plain,baseline]' \
		bench.out_json=experiments/perf/peak/l2_0999.json hydra.run.dir=$${TMPDIR:-/tmp}/ctx_peak \
		$(ARGS) 2>&1 | tee experiments/perf/peak/l2_0999.txt
	CTX_INPAINT_THREAD_POLICY=spin $(PY) -m ctx_inpaint.bench +experiment=l2_0999 'bench.measure=[plain,baseline]' \
		trainer.precision=32-true bench.bf16=true bench.out_json=experiments/perf/peak/l2_0999_fp32.json \
		hydra.run.dir=$${TMPDIR:-/tmp}/ctx_peak_fp32 $(ARGS) 2>&1 | tee experiments/perf/peak/l2_0999_fp32.txt

# Shipped weights (issue 27): recorded trainings on 2 CPU cores (weights-train, then weights-tune for freeform), then their generators as float16
# safetensors + JSON in ctx_inpaint/inference/pretrained/ (what Inpainter.load and `inpaint -c NAME` load). Resume an interrupted pair
# with ARGS=ckpt_path=last: the cosine lr follows the Timer, whose elapsed time travels in last.ckpt.
WEIGHTS_RUNS ?= logs/runs/ship
# Budgets (trainer.max_time, DD:HH:MM:SS) and the first run's threads: the free-form run alone on both cores for 1 h,
# then its extension to 1 h 50 beside the centre fine-tune (50 min), one thread each: 1 h 50 of wall time, one
# sitting (the machine may not outlive a longer one). Longer budgets: e.g. SHIP_FREEFORM_TIME=00:02:00:00.
SHIP_FREEFORM_TIME ?= 00:01:00:00
SHIP_FREEFORM_THREADS ?= 2
SHIP_EXT_TIME ?= 00:01:50:00
SHIP_CENTER_TIME ?= 00:00:50:00
SHIP_WAIT = $(if $(filter 1,$(SHIP_FREEFORM_THREADS)),OMP_WAIT_POLICY=PASSIVE,CTX_INPAINT_THREAD_POLICY=spin)
weights-train: ## Train the shipped models into WEIGHTS_RUNS: ship_freeform (SHIP_FREEFORM_TIME, 1 h on 2 threads), then its extension (to SHIP_EXT_TIME, 1 h 50) beside ship_center fine-tuned from it (SHIP_CENTER_TIME, 50 min), one thread each; ARGS=ckpt_path=last resumes
	mkdir -p $(WEIGHTS_RUNS)
	OMP_NUM_THREADS=$(SHIP_FREEFORM_THREADS) $(SHIP_WAIT) $(PY) -m ctx_inpaint.train +experiment=ship_freeform hydra.run.dir=$(WEIGHTS_RUNS)/freeform trainer.max_time=$(SHIP_FREEFORM_TIME) $(ARGS) > $(WEIGHTS_RUNS).freeform.log 2>&1 \
		|| { tail -n 1 $(WEIGHTS_RUNS).freeform.log; exit 1; }
	test -f $(WEIGHTS_RUNS)/center_init.ckpt || cp $(WEIGHTS_RUNS)/freeform/checkpoints/last.ckpt $(WEIGHTS_RUNS)/center_init.ckpt
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m ctx_inpaint.train +experiment=ship_freeform hydra.run.dir=$(WEIGHTS_RUNS)/freeform ckpt_path=last trainer.max_time=$(SHIP_EXT_TIME) > $(WEIGHTS_RUNS).freeform_ext.log 2>&1 & \
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m ctx_inpaint.train +experiment=ship_center hydra.run.dir=$(WEIGHTS_RUNS)/center init_from=$(WEIGHTS_RUNS)/center_init.ckpt trainer.max_time=$(SHIP_CENTER_TIME) $(ARGS) > $(WEIGHTS_RUNS).center.log 2>&1 & \
	wait
	tail -n 2 $(WEIGHTS_RUNS).freeform_ext.log $(WEIGHTS_RUNS).center.log

# The free-form model's last stage (after weights-train): ship_freeform's weights fine-tuned with a fifth of the holes
# the centre one (ship_freeform_tune), SHIP_TUNE_TIME on SHIP_TUNE_THREADS threads. SHIP_TUNE_INIT may name a
# .safetensors export or a shipped model instead (its generator; the discriminator starts anew).
SHIP_TUNE_TIME ?= 00:01:30:00
SHIP_TUNE_THREADS ?= 2
SHIP_TUNE_INIT ?= $(WEIGHTS_RUNS)/freeform/checkpoints/last.ckpt
weights-tune: ## Fine-tune the free-form run (SHIP_TUNE_INIT) into WEIGHTS_RUNS/freeform_tune: ship_freeform_tune, SHIP_TUNE_TIME (1 h 30) on SHIP_TUNE_THREADS (2); ARGS=ckpt_path=last resumes
	mkdir -p $(WEIGHTS_RUNS)
	OMP_NUM_THREADS=$(SHIP_TUNE_THREADS) $(if $(filter 1,$(SHIP_TUNE_THREADS)),OMP_WAIT_POLICY=PASSIVE,CTX_INPAINT_THREAD_POLICY=spin) \
		$(PY) -m ctx_inpaint.train +experiment=ship_freeform_tune hydra.run.dir=$(WEIGHTS_RUNS)/freeform_tune \
		init_from=$(SHIP_TUNE_INIT) trainer.max_time=$(SHIP_TUNE_TIME) $(ARGS) > $(WEIGHTS_RUNS).freeform_tune.log 2>&1 \
		|| { tail -n 1 $(WEIGHTS_RUNS).freeform_tune.log; exit 1; }
	tail -n 2 $(WEIGHTS_RUNS).freeform_tune.log

weights: ## Export WEIGHTS_RUNS' last checkpoints to ctx_inpaint/inference/pretrained/ (float16 safetensors + JSON, float16 cost measured; run records in experiments/quality/shipped/runs/); ARGS="--only freeform"
	$(PY) experiments/quality/freeform/ship.py --runs $(WEIGHTS_RUNS) $(ARGS)

FREEFORM_OUT := experiments/quality/freeform
FREEFORM_SETS := center,random_region,freeform_thin,freeform_medium,freeform_thick
quality-freeform: ## Regenerate experiments/quality/freeform/: the shipped models and OpenCV on named mask sets, campus hold-out and other places
	$(PY) -m ctx_inpaint.evaluate -c freeform --mask-sets $(FREEFORM_SETS) -o $(FREEFORM_OUT)/freeform_holdout --grid 6
	$(PY) -m ctx_inpaint.evaluate -c freeform --mask-sets $(FREEFORM_SETS) -i embedded:places -o $(FREEFORM_OUT)/freeform_places --grid 6
	$(PY) -m ctx_inpaint.evaluate -c center --mask-sets $(FREEFORM_SETS) -o $(FREEFORM_OUT)/center_holdout --grid 6
	$(PY) -m ctx_inpaint.evaluate -c freeform -o $(FREEFORM_OUT)/freeform_val
	$(PY) -m ctx_inpaint.export -c freeform -o $${TMPDIR:-/tmp}/ctx_freeform.onnx | tee $(FREEFORM_OUT)/onnx_export.txt
	$(PY) experiments/quality/freeform/summarize.py

# Issue 27's bar (experiments/quality/shipped/): each shipped model against the better of OpenCV Telea and NS, per
# mask set and hole-area bin, on the campus hold-out, other places and the cross-source photos. SHIP_FREEFORM and
# SHIP_CENTER take a .ckpt or .safetensors to score a candidate before it ships; ARGS go to every evaluate call
# (e.g. ARGS="--crops-per-image 2" with SHIPPED_OUT=/tmp/qs for a quick check outside the repository).
SHIP_FREEFORM ?= freeform
SHIP_CENTER ?= center
SHIP_CENTER_SETS ?= center
SHIPPED_OUT ?= experiments/quality/shipped
quality-shipped: ## Issue 27's bar: SHIP_FREEFORM (5 mask sets) and SHIP_CENTER (centre hole) vs OpenCV on holdout, places, cross; RESULTS.md, results.json in SHIPPED_OUT, then make model-cards
	for images in holdout places cross; do \
		$(PY) -m ctx_inpaint.evaluate -c $(SHIP_FREEFORM) --mask-sets $(FREEFORM_SETS) -i embedded:$$images -o $(SHIPPED_OUT)/freeform_$$images --grid 6 $(ARGS) || exit 1; \
		$(PY) -m ctx_inpaint.evaluate -c $(SHIP_CENTER) --mask-sets $(SHIP_CENTER_SETS) -i embedded:$$images -o $(SHIPPED_OUT)/center_$$images --grid 6 $(ARGS) || exit 1; \
	done
	$(PY) experiments/quality/shipped/summarize.py --dir $(SHIPPED_OUT)
	$(MAKE) model-cards SHIPPED_OUT=$(SHIPPED_OUT)

# The docs' model cards (docs/models.md), from the records alone: each shipped model's JSON (make weights),
# SHIPPED_OUT/results.json (make quality-shipped) and experiments/quality/shipped/latency.json (make quality-latency).
# A scratch SHIPPED_OUT (e.g. /tmp/qs) writes its cards to SHIPPED_OUT/models.md, leaving docs/ alone.
MODEL_CARDS_OUT ?= $(if $(filter experiments/quality/shipped,$(SHIPPED_OUT)),docs/models.md,$(SHIPPED_OUT)/models.md)
model-cards: ## Regenerate docs/models.md (a card per shipped model) from the weights' JSONs, results.json and latency.json
	$(PY) experiments/quality/shipped/model_cards.py --results $(SHIPPED_OUT) --out $(MODEL_CARDS_OUT)

# Inference latency of the shipped weights at LATENCY_BEFORE (git revision) against the working tree's, interleaved
# in one process (Inpainter.predict, 256 and 1024 px photos), under the heavy lock: run it on a quiet machine.
LATENCY_BEFORE ?= HEAD
quality-latency: ## Latency of the shipped weights at LATENCY_BEFORE vs the working tree's (experiments/quality/shipped/latency.{json,md}); ARGS="--repeats 20 ..."
	flock /tmp/ctx_heavy.lock $(PY) experiments/quality/shipped/latency.py --before-rev $(LATENCY_BEFORE) $(ARGS)

leak-check: ## Does the fill depend on hidden pixels? Two photos differing only in the hole, CKPT= (0 = no leak)
	@test -n "$(CKPT)" || { echo "make leak-check: set CKPT=path/to/checkpoint.ckpt"; exit 2; }
	$(PY) experiments/faithful/leak_check.py $(CKPT)

clean: ## Remove run outputs (logs/) and caches, keep .venv
	rm -rf logs .pytest_cache .ruff_cache

.PHONY: quality-unet quality-train-unet weights weights-train weights-tune quality-freeform quality-shipped quality-latency model-cards leak-check help install train test lint format clean evaluate quality quality-train quality-train-tuned quality-probes ablations report bench-data bench bench-attempts bench-precision bench-ab bench3 gpu-check
.PHONY: demo demo-loadtest demo-screenshot time-to-quality time-to-quality-report allocator-ab
.PHONY: docs docs-serve reliability-memory ablations-report bench-contention bench-peak bf16-quality train-speedup
