"""tfgen-vsc-study: the VSC-against-VAE grid, its figures and its table."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfgen import vsc_study
from tests.conftest import shared_data


def test_grid_order_names_and_errors():
  points = vsc_study.grid("fashion_mnist", latents=(10, 25, 50, 100, 200), alphas=(1, 0.01))
  # Coarse to fine: a study cut short already spans the axis.
  assert [p.latent for p in points[::2]] == [10, 200, 50, 100, 25]
  assert [p.name for p in points[:2]] == ["vae_l10", "vsc_a0.01_l10"]
  assert points[1].workdir("/r") == "/r/fashion_mnist/vsc_a0.01_l10"
  assert points[1].config_spec(12).endswith(
      "configs/vsc.py:data=fashion_mnist,latent=10,alpha=0.01,epochs=12")
  with pytest.raises(vsc_study.StudyError, match="unknown data set 'mnist'; the study runs on "
                     "fashion_mnist, mnist_5k"):
    vsc_study.grid("mnist")
  with pytest.raises(vsc_study.StudyError, match=r"alpha must be in \(0, 1\], got 2"):
    vsc_study.grid("mnist_5k", alphas=(2,))
  with pytest.raises(vsc_study.StudyError, match="latent sizes must be >= 1"):
    vsc_study.grid("mnist_5k", latents=(0,))
  with pytest.raises(vsc_study.StudyError, match="grid is empty"):
    vsc_study.grid("mnist_5k", latents=())


def _fake_run(root, data, latent, alpha, elbo, accuracy):
  workdir = vsc_study.Point(data, latent, alpha).workdir(str(root))
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    json.dump({"model": {"latent_size": latent, "alpha": alpha}, "train": {"num_epochs": 3}}, f)
  with open(vsc_study.evaluation_file(workdir), "w", encoding="utf-8") as f:
    json.dump({"elbo": elbo, "code_classification_test_accuracy": accuracy,
               "active_dimensions_per_image": 2.5, "active_units": [7]}, f)


def test_plot_and_table_from_evaluation_files(tmp_path):
  root = tmp_path / "study"
  with pytest.raises(vsc_study.StudyError, match="no evaluated runs"):
    vsc_study.plot(str(root), str(tmp_path / "img"))
  for latent in (10, 50):
    for alpha, elbo, accuracy in ((1.0, -250.0, 0.70), (0.01, -260.0, 0.75), (0.2, -255., 0.7)):
      _fake_run(root, "fashion_mnist", latent, alpha, elbo - latent / 10, accuracy)
  os.makedirs(root / "fashion_mnist" / "vae_l100")  # Not evaluated yet: left out.
  written = vsc_study.plot(str(root), str(tmp_path / "img"))
  assert [os.path.basename(p) for p in written] == ["vsc_elbo_vs_latent.png",
                                                    "vsc_accuracy_vs_latent.png"]
  for path in written:
    image = tf.io.decode_png(tf.io.read_file(path))
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert float(tf.math.reduce_std(tf.cast(image, tf.float32))) > 1  # Something is drawn.
  text = vsc_study.table(str(root))
  assert text.count("\n") == 1 + 6
  assert "| Fashion-MNIST | VAE | 10 | 3 | -251.00 | 70.0% | 2.50 | 7 |" in text
  assert "| Fashion-MNIST | VSC α = 0.01 | 50 | 3 | -265.00 | 75.0% |" in text

  md = tmp_path / "results.md"
  begin, end = vsc_study.TABLE_MARKERS
  md.write_text(f"before\n{begin}\nold\n{end}\nafter\n", encoding="utf-8")
  vsc_study.write_table(str(root), str(md))
  assert md.read_text(encoding="utf-8") == f"before\n{begin}\n{text}\n{end}\nafter\n"
  md.write_text("no markers\n", encoding="utf-8")
  with pytest.raises(vsc_study.StudyError, match="tfgen-vsc-study begin"):
    vsc_study.write_table(str(root), str(md))

  (root / "fashion_mnist" / "vae_l10" / "config.json").write_text("{", encoding="utf-8")
  with pytest.raises(vsc_study.StudyError, match="damaged"):
    vsc_study.table(str(root))


def test_run_trains_evaluates_and_skips_what_is_done(tmp_path):
  manual_dir = str(shared_data("mnist_5k"))
  root = str(tmp_path / "study")
  tiny = {"data.limit": "256", "data.num_validation": "64", "model.hidden_sizes": "(16,)",
          "train.batch_size": "32", "train.jit_compile": "false"}
  done = vsc_study.run(root, "mnist_5k", manual_dir, latents=(3,), alphas=(0.01,), epochs=1,
                       overrides=tiny, show_progress=False)
  assert done == [os.path.join(root, "mnist_5k", "vsc_a0.01_l3")]
  [measured] = vsc_study.collect(root, "mnist_5k")
  assert (measured.point.alpha, measured.point.latent, measured.epochs) == (0.01, 3, 1)
  assert np.isfinite(measured.elbo) and measured.elbo < 0 and 0.1 <= measured.accuracy <= 1
  assert 0 <= measured.active_dimensions <= 3
  # Evaluated points are skipped: nothing is trained again.
  assert vsc_study.run(root, "mnist_5k", manual_dir, latents=(3,), alphas=(0.01,), epochs=1,
                       overrides=tiny, show_progress=False) == []
  with pytest.raises(vsc_study.StudyError, match="epochs must be >= 1"):
    vsc_study.run(root, "mnist_5k", manual_dir, latents=(4,), epochs=-1)
