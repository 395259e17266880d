#!/bin/bash
# GPU benchmarks on the lent machine: Ray (slimmed wheel) carried in .whl, everything else from the image.
cd "$(dirname "$0")/.."
mkdir -p /tmp/site
tar xJf .whl/ray-slim.tar.xz -C /tmp/site || exit 3
for w in .whl/*.whl; do python3 -m zipfile -e "$w" /tmp/site; done
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee $OUT/gpu.txt
python3 -c "import sys,torch,torchvision,ray,numpy,pandas; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torchvision.__version__, ray.__version__, numpy.__version__, pandas.__version__, torch.cuda.get_device_name(0))" | tee -a $OUT/gpu.txt
t0=$SECONDS
# TRAINER_ARGS: e.g. "--only synthetic32_resnet18_v2_b256 --repeats 9 --steps 900" reruns the
# launch-bound case alone, longer and more often (the other case's figures are kept)
[ -z "$SKIP_TRAINER" ] && timeout 230 python3 bench/trainer_throughput.py --device cuda ${TRAINER_ARGS:---repeats 3} > $OUT/trainer.log 2>&1; echo "trainer rc $? $((SECONDS-t0))s"; tail -5 $OUT/trainer.log
cp bench/results/trainer_throughput_gpu.json $OUT/ 2>/dev/null
t0=$SECONDS
[ -z "$SKIP_TINY" ] && timeout 90 python3 bench/tiny_val_cost.py --device cuda > $OUT/tiny.log 2>&1; echo "tiny rc $? $((SECONDS-t0))s"; tail -4 $OUT/tiny.log
cp bench/results/tiny_val_cost_gpu.json $OUT/ 2>/dev/null
t0=$SECONDS
[ -z "$SKIP_PACK" ] && timeout 210 python3 bench/gpu_packing.py > $OUT/pack.log 2>&1; echo "pack rc $? $((SECONDS-t0))s"; tail -8 $OUT/pack.log
cp bench/results/gpu_packing.json $OUT/ 2>/dev/null
ls $OUT
