#!/bin/bash
# Fashion-MNIST on the lent GPU: a baseline_1pct sweep (issue 16's study) and the methods table.
cd "$(dirname "$0")/.."
mkdir -p /tmp/site /tmp/fashion
tar xJf .whl/ray-slim.tar.xz -C /tmp/site || exit 3
for w in .whl/*.whl; do python3 -m zipfile -e "$w" /tmp/site; done
cp .whl/fashion/*labels* /tmp/fashion/ && for f in .whl/fashion/*.xz; do xz -dc "$f" > /tmp/fashion/$(basename "$f" .xz); done
ls -la /tmp/fashion
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
SW=/tmp/sw; NAME=fashion_mnist_h200
t0=$SECONDS
timeout 225 python3 tune/run_sweep.py --space baseline_1pct --dataset fashion_mnist --data-dir /tmp/fashion \
  --max-trials 96 --set epochs=200 --set width=1 --gpus-per-trial 0.0625 --cpus-per-trial 1 --concurrency 16 \
  --storage $SW --name $NAME --no-report > $OUT/sweep.log 2>&1
echo "sweep rc $? $((SECONDS-t0))s"; tail -12 $OUT/sweep.log
tar czf $OUT/sweep.tgz -C $SW --exclude=$NAME/ray --exclude=checkpoint --exclude=pbt_checkpoint $NAME; ls -la $OUT
t0=$SECONDS
timeout 120 python3 bench/methods_fashion_mnist.py --from-sweep $SW/$NAME --data-dir /tmp/fashion --device cuda \
  --jobs 12 --methods supervised s4l_rotation s4l_exemplar vat_entmin > $OUT/methods.log 2>&1
echo "methods rc $? $((SECONDS-t0))s"; tail -14 $OUT/methods.log
cp bench/results/methods_fashion_mnist_gpu.json $OUT/ 2>/dev/null; ls $OUT
