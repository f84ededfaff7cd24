"""Loads a tfgen SavedModel with TensorFlow alone and calls every signature (test_export.py).

Run as: python reload_script.py SAVED_MODEL INPUTS.npz OUT.json. Importing tfgen is blocked, so
passing proves the SavedModel serves without it.
"""

import importlib.abc
import json
import os
import sys


class _NoTfgen(importlib.abc.MetaPathFinder):

  def find_spec(self, fullname, path, target=None):
    if fullname == "tfgen" or fullname.startswith("tfgen."):
      raise ImportError("this process must not import tfgen")
    return None


sys.meta_path.insert(0, _NoTfgen())

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf


def _error(fn, **kwargs):
  try:
    fn(**kwargs)
  except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
    return str(e)
  return None


def main(saved_model, inputs_path, out_path):
  loaded = tf.saved_model.load(saved_model)
  signatures = loaded.signatures
  with open(os.path.join(saved_model, "tfgen_export.json"), encoding="utf-8") as f:
    limits = json.load(f)["limits"]
  inputs = np.load(inputs_path)
  images = tf.constant(inputs["images"], tf.uint8)
  k = int(inputs["num_importance_samples"])
  results = {"signatures": sorted(signatures)}

  sample = signatures["sample"]
  first = sample(num_samples=tf.constant(5), seed=tf.constant([7, 1]))
  second = sample(num_samples=tf.constant(5), seed=tf.constant([7, 1]))
  other = sample(num_samples=tf.constant(5), seed=tf.constant([8, 1]))
  results["sample_dtype"] = first["images"].dtype.name
  results["sample_shape"] = first["images"].shape.as_list()
  results["sample_repeats"] = bool(np.array_equal(first["images"], second["images"]))
  results["sample_differs_by_seed"] = not np.array_equal(first["probabilities"],
                                                         other["probabilities"])
  default = signatures["serving_default"](num_samples=tf.constant(5), seed=tf.constant([7, 1]))
  results["default_is_sample"] = bool(np.array_equal(first["images"], default["images"]))

  log_prob_args = {"images": images}
  if "encode" in signatures:
    log_prob_args["num_importance_samples"] = tf.constant(k)
  scores = signatures["log_prob"](**log_prob_args)
  results["log_prob"] = scores["log_prob"].numpy().tolist()
  results["bits_per_dim"] = scores["bits_per_dim"].numpy().tolist()

  wrong_shape = dict(log_prob_args, images=tf.zeros([2, 5, 5, 1], tf.uint8))
  too_large = dict(log_prob_args, images=tf.fill(images.shape, tf.constant(7, tf.uint8)))
  wrong_dtype = dict(log_prob_args, images=tf.zeros(images.shape, tf.float32))
  results["errors"] = {
      "log_prob_shape": _error(signatures["log_prob"], **wrong_shape),
      "log_prob_range": _error(signatures["log_prob"], **too_large),
      "log_prob_dtype": _error(signatures["log_prob"], **wrong_dtype),
      "sample_count": _error(sample, num_samples=tf.constant(0), seed=tf.constant([1, 2])),
      "sample_seed": _error(sample, num_samples=tf.constant(2), seed=tf.constant([1, 2, 3])),
      "log_prob_rank": _error(signatures["log_prob"], **dict(log_prob_args, images=images[..., 0])),
      "log_prob_batch": _error(signatures["log_prob"], **dict(
          log_prob_args, images=tf.zeros([limits["max_batch_size"] + 1, 28, 28, 1], tf.uint8))),
      "sample_count_shape": _error(sample, num_samples=tf.constant([2]), seed=tf.constant([1, 2])),
      "sample_seed_rank": _error(sample, num_samples=tf.constant(2), seed=tf.constant([[1, 2]])),
      "sample_limit": _error(sample, num_samples=tf.constant(limits["max_samples"] + 1),
                             seed=tf.constant([1, 2])),
  }
  if "encode" in signatures:
    results["errors"]["log_prob_k"] = _error(signatures["log_prob"],
                                             **dict(log_prob_args,
                                                    num_importance_samples=tf.constant(0)))
    code = signatures["encode"](images=images)
    results["encode_shapes"] = {name: v.shape.as_list() for name, v in code.items()}
    decode_args = {"latents": code["loc"]}
    if "labels" in signatures["decode"].structured_input_signature[1]:
      decode_args["labels"] = code["labels"]  # Class-conditional latent models.
    decoded = signatures["decode"](**decode_args)
    results["decode_shape"] = decoded["images"].shape.as_list()
    results["decode_dtype"] = decoded["images"].dtype.name
    latent_size = code["loc"].shape[-1]
    results["errors"]["encode_shape"] = _error(signatures["encode"],
                                               images=tf.zeros([1, 3, 3], tf.uint8))
    results["errors"]["decode_shape"] = _error(
        signatures["decode"], **dict(decode_args, latents=tf.zeros([6, latent_size + 1])))
    nan = np.zeros(code["loc"].shape, np.float32)
    nan[0, 0] = np.nan
    results["errors"]["decode_nan"] = _error(signatures["decode"],
                                             **dict(decode_args, latents=tf.constant(nan)))
    results["errors"]["log_prob_k_limit"] = _error(signatures["log_prob"], **dict(
        log_prob_args, num_importance_samples=tf.constant(limits["max_importance_samples"] + 1)))
    results["errors"]["log_prob_k_shape"] = _error(signatures["log_prob"], **dict(
        log_prob_args, num_importance_samples=tf.constant([k])))
  if "classify" in signatures:
    classified = signatures["classify"](images=images)
    results["classify_labels"] = classified["labels"].numpy().tolist()
    results["classify_probabilities_sum"] = classified["probabilities"].numpy().sum(-1).tolist()
  if "inpaint" in signatures:
    known = np.zeros(images.shape, np.uint8)
    known[:, : images.shape[1] // 2] = 1  # The top half is given.
    filled = signatures["inpaint"](images=images, known=tf.constant(known),
                                   seed=tf.constant([3, 4]))["images"].numpy()
    results["inpaint_keeps_known"] = bool(np.array_equal(filled[known == 1],
                                                         inputs["images"][known == 1]))
    results["inpaint_values"] = sorted(np.unique(filled).tolist())
    results["errors"]["inpaint_known"] = _error(signatures["inpaint"], images=images,
                                                known=tf.zeros([1, 2, 2, 1], tf.uint8),
                                                seed=tf.constant([1, 2]))
  results["tfgen_imported"] = any(m == "tfgen" or m.startswith("tfgen.") for m in sys.modules)
  with open(out_path, "w", encoding="utf-8") as f:
    json.dump(results, f)


if __name__ == "__main__":
  # SAVED_MODEL INPUTS OUT, repeated: one process (one TensorFlow import) serves them all.
  arguments = sys.argv[1:]
  for i in range(0, len(arguments), 3):
    main(*arguments[i:i + 3])
