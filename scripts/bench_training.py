"""Training memory of each on-device scheme beside full back-propagation in TensorFlow, and the
accuracy each scheme reaches on the adaptation task (issue 14, docs/training.md).

For each model: every scheme `plan --train` accepts (bias, head, last:2 .. as far as the
backward reaches; mcunet.trainplan.candidates) with its training peak SRAM and flash; then full
back-propagation of the float Keras equivalent of the same graph (built from the .tflite's ops
and shapes) in TensorFlow, one SGD-with-momentum step at batch 1, two figures:

- counted: the float32 bytes that step needs at its peak: the weights, their gradients and
  momenta, and every activation the tape keeps for the backward (the model's input and each
  layer's output, batch 1). TF's CPU allocator does not track memory
  (tf.config.experimental.get_memory_info('CPU:0') answers {'current': 0, 'peak': 0} with
  tensorflow-cpu 2.21), so this is the comparable figure;
- measured: the growth of the process's peak RSS over one training step, after a forward pass
  (in a fresh process per model): what TF's runtime allocates for the backward on top of
  inference, allocator pools included (coarse: pages, and whatever its CPU runtime reserves).

And the adaptation task: the Fashion-MNIST CNN (classes 0-4, scripts/fashion_adapt.py
--pointwise) adapted to classes 5-9 from --samples labelled images, --epochs passes, each
scheme at its best of --lr on --eval held-out test images of 5-9, trained by
mcunet.training.TrainReference (bit-exact with the generated C on the host and the emulated M4:
the accuracy the device reaches from the same samples in the same order).

usage: python scripts/bench_training.py [--kws PATH] [--fashion PATH | --out DIR]
       [--samples 500] [--eval 500] [--epochs 15] [--lr 0.003,0.01,0.03] [--json PATH]
       python scripts/bench_training.py --model M.tflite --dataset D.npz [...]   (one model)
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
KWS = Path("/work/shared/models/mlperf-tiny/kws_ref_model.tflite")


def keras_equivalent(graph):
    """The float Keras model of a chain of CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, MEAN,
    RESHAPE/SQUEEZE, FULLY_CONNECTED and SOFTMAX (random weights: memory does not depend on
    them), or ValueError."""
    import tensorflow as tf

    L = tf.keras.layers
    act = {"NONE": None, "RELU": "relu", "RELU6": tf.nn.relu6}
    x0 = graph.t(graph.inputs[0])
    layers = [tf.keras.Input(tuple(x0.shape[1:]))]
    for op in graph.ops:
        a = op.attrs
        if op.kind == "CONV_2D":
            w = graph.t(op.inputs[1])
            layers.append(L.Conv2D(w.shape[0], tuple(w.shape[1:3]),
                                   strides=(a["stride_h"], a["stride_w"]),
                                   padding=a["padding"].lower(), activation=act[a["activation"]]))
        elif op.kind == "DEPTHWISE_CONV_2D":
            w = graph.t(op.inputs[1])
            layers.append(L.DepthwiseConv2D(tuple(w.shape[1:3]),
                                            strides=(a["stride_h"], a["stride_w"]),
                                            padding=a["padding"].lower(),
                                            depth_multiplier=a.get("depth_multiplier", 1),
                                            activation=act[a["activation"]]))
        elif op.kind == "AVERAGE_POOL_2D":
            layers.append(L.AveragePooling2D((a["filter_h"], a["filter_w"]),
                                             strides=(a["stride_h"], a["stride_w"]),
                                             padding=a["padding"].lower()))
        elif op.kind == "MEAN":
            layers.append(L.GlobalAveragePooling2D())
        elif op.kind in ("RESHAPE", "SQUEEZE"):
            layers.append(L.Reshape(tuple(graph.t(op.outputs[0]).shape[1:])))
        elif op.kind == "FULLY_CONNECTED":
            layers.append(L.Dense(graph.t(op.inputs[1]).shape[0],
                                  activation=act[a.get("activation", "NONE")]))
        elif op.kind == "SOFTMAX":
            layers.append(L.Softmax())
        else:
            raise ValueError(f"no Keras equivalent for {op.kind} (op {op.index})")
    return tf.keras.Sequential(layers)


def tf_worker(model_path: str) -> dict:
    """In a fresh process: the Keras equivalent's counted bytes and the peak RSS growth of one
    training step over a forward pass."""
    import tensorflow as tf

    from mcunet.compiler import load_graph

    graph = load_graph(model_path)
    model = keras_equivalent(graph)
    params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    acts = int(np.prod(model.input_shape[1:])) + sum(int(np.prod(l.output.shape[1:]))
                                                      for l in model.layers)
    x = tf.random.uniform((1,) + tuple(model.input_shape[1:]))
    y = tf.constant([0])
    opt = tf.keras.optimizers.SGD(0.01, momentum=0.9)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy()
    opt.build(model.trainable_variables)
    model(x, training=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"parameters": params, "activations": acts,
            "counted_bytes": 4 * (3 * params + acts),
            "rss_growth_bytes": 1024 * (after - before), "tensorflow": tf.__version__}


def tf_full_backprop(model: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--tf-worker", str(model)],
                       capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(lines[-1])


def fashion_task(samples: int, eval_rows: int, seed: int = 0):
    """Classes 5-9 relabelled 0-4: `samples` training images and `eval_rows` test images."""
    from mcunet.search.data import load_training_data

    x_train, y_train, x_test, y_test = load_training_data("fashion-mnist", [5, 6, 7, 8, 9])
    rng = np.random.default_rng(seed)
    take = rng.permutation(len(x_train))[:samples]
    held = rng.permutation(len(x_test))[:eval_rows]
    return x_train[take], y_train[take], x_test[held], y_test[held]


def npz_task(path: str, samples: int, eval_rows: int, seed: int = 0):
    from mcunet.search.data import load_training_data

    x_train, y_train, x_test, y_test = load_training_data(path)
    rng = np.random.default_rng(seed)
    take = rng.permutation(len(x_train))[:samples]
    held = rng.permutation(len(x_test))[:eval_rows]
    return x_train[take], y_train[take], x_test[held], y_test[held]


def bench_model(name: str, model: Path, task, epochs: int, lrs: list[float]) -> dict:
    from mcunet.search.data import as_model_input as _as_input
    from mcunet.trainplan import candidates, measure

    schemes, refused = candidates(str(model))
    tf = tf_full_backprop(model)
    rows = []
    acc = {}
    if task is not None:
        x, y, xv, yv = task
        first = schemes[0][1]
        acc = measure(str(model), schemes, _as_input(x, first), y, _as_input(xv, first), yv,
                      epochs, lrs)
    for spec, compiled in schemes:
        s = compiled.training.summary(compiled)
        row = {"scheme": s["scheme"], "layers": s["layers"], "parameters": s["parameters"],
               "training_peak_sram_bytes": s["training_peak_sram_bytes"],
               "training_flash_bytes": s["training_flash_bytes"],
               "inference_peak_sram_bytes": None}
        if "counted_bytes" in tf:
            row["tf_over_mcunet"] = tf["counted_bytes"] / s["training_peak_sram_bytes"]
            row["tf_rss_over_mcunet"] = tf["rss_growth_bytes"] / s["training_peak_sram_bytes"]
        if spec in acc:
            lr, before, after, _ = acc[spec]
            row.update(lr=lr, accuracy_before=before, accuracy_after=after)
        rows.append(row)
    from mcunet import api
    inference = api.compile_unchecked(str(model)).peak_sram_bytes
    for row in rows:
        row["inference_peak_sram_bytes"] = inference
    return {"model": name, "path": str(model), "schemes": rows, "refused": refused,
            "tensorflow_full_backprop": tf}


def print_table(result: dict) -> None:
    tf = result["tensorflow_full_backprop"]
    print(f"\n{result['model']} ({result['path']}); inference peak SRAM "
          f"{result['schemes'][0]['inference_peak_sram_bytes']:,} B")
    if "counted_bytes" in tf:
        print(f"TensorFlow {tf['tensorflow']} full back-propagation (float32, batch 1, SGD with "
              f"momentum): {tf['parameters']:,} parameters, {tf['activations']:,} kept activation "
              f"values: {tf['counted_bytes']:,} B counted; measured peak RSS growth of one step "
              f"over a forward pass: {tf['rss_growth_bytes']:,} B")
    else:
        print(f"TensorFlow: {tf['error']}")
    head = (f"{'scheme':<8} {'layers':<8} {'params':>7} {'mcunet train SRAM':>18} {'flash':>8} "
            f"{'TF counted / mcunet':>20} {'TF RSS / mcunet':>16} {'lr':>6} {'before':>7} {'after':>7}")
    print(head)
    print("-" * len(head))
    for r in result["schemes"]:
        ratio = f"{r['tf_over_mcunet']:.1f}x" if "tf_over_mcunet" in r else "-"
        rss = f"{r['tf_rss_over_mcunet']:.0f}x" if "tf_rss_over_mcunet" in r else "-"
        acc = (f"{r['lr']:>6g} {r['accuracy_before']:>7.1%} {r['accuracy_after']:>7.1%}"
               if "accuracy_after" in r else f"{'-':>6} {'-':>7} {'-':>7}")
        print(f"{r['scheme']:<8} {','.join(map(str, r['layers'])):<8} {r['parameters']:>7,} "
              f"{r['training_peak_sram_bytes']:>18,} {r['training_flash_bytes']:>8,} "
              f"{ratio:>20} {rss:>16} {acc}")
    for spec, why in result["refused"].items():
        print(f"{spec}: refused ({why.split(';')[0]})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tf-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--kws", type=Path, default=KWS)
    ap.add_argument("--fashion", type=Path, default=None,
                    help="the Fashion-MNIST 0-4 CNN with the 1x1 conv (fashion04_pw.tflite); "
                         "default: OUT/fashion04_pw.tflite, built by scripts/fashion_adapt.py's "
                         "recipe when missing")
    ap.add_argument("--out", type=Path, default=Path("/tmp/mcunet-bench-training"))
    ap.add_argument("--model", type=Path, default=None, help="bench this model alone")
    ap.add_argument("--dataset", default=None, help="with --model: an .npz for its task")
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--eval", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", default="0.003,0.01,0.03")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    if a.tf_worker:
        print(json.dumps(tf_worker(a.tf_worker)))
        return
    sys.path.insert(0, str(ROOT))
    lrs = [float(v) for v in a.lr.split(",")]
    start = time.perf_counter()
    results = []
    if a.model is not None:
        task = npz_task(a.dataset, a.samples, a.eval) if a.dataset else None
        results.append(bench_model(a.model.stem, a.model, task, a.epochs, lrs))
    else:
        results.append(bench_model("KWS (MLPerf Tiny kws_ref_model)", a.kws, None, a.epochs, lrs))
        fashion = a.fashion or a.out / "fashion04_pw.tflite"
        if not fashion.exists():
            from scripts.fashion_adapt import build_model

            a.out.mkdir(parents=True, exist_ok=True)
            fashion = build_model(a.out, 8, pointwise=True)
        results.append(bench_model("Fashion-MNIST 0-4 CNN (pointwise), adapted to 5-9", fashion,
                                   fashion_task(a.samples, a.eval), a.epochs, lrs))
    for r in results:
        print_table(r)
    print(f"\nin {time.perf_counter() - start:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
