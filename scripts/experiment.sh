#!/usr/bin/env bash
# make experiment TASK=<task> SEEDS=<n> [PRESET=small] [MODELS="..."] [JOBS=j] [DATA=dir]
#
# Trains every model of experiments/<task>/<preset>/ (one YAML per model)
# for the first n seeds of 1919 2222 2929 1717 1005 1006 ... (1000 + the
# seed's 1-based position from the fifth on), one run file per (model,
# seed) under $RESULTS/<task>/<preset>/<model>/seed<k>.h5, then writes the
# report (summary.md + PNG figures) next to them.
#   - a finished run (completed / stopped_early) is skipped;
#   - an unfinished one (killed, interrupted) is resumed from its checkpoint;
#   - JOBS runs train at once, each with (cores / JOBS) threads.
#   - DATA: the directory of your copy of a dataset the task reads from
#     files (cifar, imdb), passed to every run as dataset.data_dir.
# Extra arguments for every `seqeig train` can be given in TRAIN_ARGS
# (e.g. TRAIN_ARGS="--set train.total_steps=20" for a smoke test).
set -uo pipefail

TASK=${1:?usage: experiment.sh TASK SEEDS [PRESET] [MODELS] [JOBS] [DATA]}
SEEDS=${2:?usage: experiment.sh TASK SEEDS [PRESET] [MODELS] [JOBS] [DATA]}
PRESET=${3:-small}
MODELS=${4:-}
JOBS=${5:-}
DATA=${6:-}
RESULTS=${RESULTS:-results}
SEQEIG=${SEQEIG:-build/seqeig}
PYTHON=${PYTHON:-/usr/bin/python3}
TRAIN_ARGS=${TRAIN_ARGS:-}

die() { echo "experiment: $*" >&2; exit 2; }

cfgdir="experiments/$TASK/$PRESET"
[ -d "experiments/$TASK" ] || die "unknown task '$TASK' (tasks: $(ls -d experiments/*/ 2>/dev/null | xargs -n1 basename | paste -sd' '))"
[ -d "$cfgdir" ] || die "task '$TASK' has no preset '$PRESET' (presets: $(ls -d experiments/$TASK/*/ | xargs -n1 basename | paste -sd' '))"
[[ "$SEEDS" =~ ^[1-9][0-9]*$ ]] || die "SEEDS must be a positive integer, got '$SEEDS'"
[ -x "$SEQEIG" ] || die "$SEQEIG not built (run make)"

if [ -z "$MODELS" ]; then
    # The study's order where present, then any other config.
    for m in sm-attention lin-attention norm-attention mamba2; do
        [ -f "$cfgdir/$m.yaml" ] && MODELS="$MODELS $m"
    done
    for f in "$cfgdir"/*.yaml; do
        m=$(basename "$f" .yaml)
        [[ " $MODELS " == *" $m "* ]] || MODELS="$MODELS $m"
    done
fi
for m in $MODELS; do
    [ -f "$cfgdir/$m.yaml" ] || die "no config $cfgdir/$m.yaml (models: $(ls $cfgdir/*.yaml | xargs -n1 basename | sed 's/.yaml$//' | paste -sd' '))"
done

cores=$(nproc)
if [ -z "$JOBS" ]; then
    # Small models use the cores better as parallel single-thread runs.
    if [ "$PRESET" = small ]; then JOBS=$cores; else JOBS=1; fi
fi
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "JOBS must be a positive integer, got '$JOBS'"
threads=$(( cores / JOBS )); [ "$threads" -ge 1 ] || threads=1

seeds=()
base=(1919 2222 2929 1717)
for ((i = 1; i <= SEEDS; i++)); do
    if [ "$i" -le 4 ]; then seeds+=("${base[$((i - 1))]}"); else seeds+=($((1000 + i))); fi
done

outdir="$RESULTS/$TASK/$PRESET"
mkdir -p "$outdir" || die "cannot create $outdir"
joblist=$(mktemp)
trap 'rm -f "$joblist"' EXIT
n_todo=0 n_done=0
# Jobs in reverse model order: the short runs (softmax attention, which
# stops early) come last and fill the tail when JOBS > 1.
order=$(echo $MODELS | tr ' ' '\n' | tac | tr '\n' ' ')
for m in $order; do
    for s in "${seeds[@]}"; do
        out="$outdir/$m/seed$s.h5"
        st=$("$SEQEIG" info "$out" --status 2>/dev/null || true)
        if [ "$st" = completed ] || [ "$st" = stopped_early ]; then
            n_done=$((n_done + 1))
        else
            echo "$m $s" >> "$joblist"
            n_todo=$((n_todo + 1))
        fi
    done
done
# Tasks read from the user's files need to know where they are (only when
# something is left to train: the report of finished runs needs no data).
# DATA becomes dataset.data_dir of every run's config, so resuming a run
# needs the same DATA string it started with.
if [ -n "$DATA" ]; then
    [ -d "$DATA" ] || die "DATA=$DATA: not a directory"
elif [ "$n_todo" -gt 0 ]; then
    for m in $MODELS; do
        if grep -q '_name_: *"\{0,1\}\(cifar\|imdb\)' "$cfgdir/$m.yaml" && ! grep -q '^ *data_dir:' "$cfgdir/$m.yaml" \
            && [[ "$TRAIN_ARGS" != *dataset.data_dir=* ]]; then
            case "$TASK" in
                cifar) hint="the CIFAR-10 binary version (data_batch_1.bin .. test_batch.bin)" ;;
                imdb) hint="the directory holding aclImdb/" ;;
                *) hint="the task's data" ;;
            esac
            die "task '$TASK' reads your copy of its data: give DATA=/path/to/it ($hint; nothing is downloaded, see docs/tasks.md)"
        fi
    done
fi
echo "experiment: $TASK/$PRESET, models:$MODELS, seeds: ${seeds[*]}"
echo "experiment: $n_todo runs to train ($n_done already finished), $JOBS at a time with $threads thread(s) each -> $outdir"

start=$(date +%s)
export SEQEIG cfgdir outdir threads TRAIN_ARGS DATA
failed=0
if [ "$n_todo" -gt 0 ]; then
    # Each line: MODEL SEED.  A failing run does not stop the others.
    xargs -P "$JOBS" -L 1 bash -c '
        m=$0; s=$1; out="$outdir/$m/seed$s.h5"
        # shellcheck disable=SC2086
        data=(); [ -n "$DATA" ] && data=(--set "dataset.data_dir=$DATA")
        "$SEQEIG" train --config "$cfgdir/$m.yaml" --seed "$s" --out "$out" --threads "$threads" --resume "${data[@]}" $TRAIN_ARGS
        rc=$?
        [ $rc -eq 0 ] || echo "experiment: $m seed $s failed (exit $rc); see $out" >&2
        exit $((rc == 0 ? 0 : 1))' < "$joblist" || failed=1
fi
elapsed=$(( $(date +%s) - start ))
printf 'experiment: training took %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))

"$PYTHON" experiments/report.py "$outdir" || exit $?
if [ "$failed" -ne 0 ]; then
    echo "experiment: some runs failed; the report covers the rest (rerun to resume)" >&2
    exit 1
fi
