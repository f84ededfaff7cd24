"""docs/python.md runs as written: every ```python block, in order, in one namespace, on real
binarized MNIST. To keep the suite fast the blocks are shortened in three ways only: 300 images
per split, 1 epoch instead of 5, and files under the test's own folder instead of /tmp."""

import os
import re

from tests.conftest import REPO
from tests.conftest import shared_data

# What is changed in the page's code, and why: the same code on less data and time.
SHORTER = (
    ("manual_dir=MANUAL_DIR)", "manual_dir=MANUAL_DIR, data_dir=DATA_DIR, limit=300)"),
    ("epochs=5", "epochs=1"),
)


def code_blocks(path):
  text = open(path, encoding="utf-8").read()
  return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


def test_every_code_block_of_docs_python_md_runs(tfds_data_dir, tmp_path, monkeypatch):
  manual_dir = str(shared_data("binarized_mnist"))
  blocks = code_blocks(REPO / "docs" / "python.md")
  assert len(blocks) >= 7
  monkeypatch.chdir(tmp_path)
  namespace = {}
  for i, block in enumerate(blocks):
    for old, new in SHORTER:
      block = block.replace(old, new)
    block = block.replace('"/tmp/', f'"{tmp_path}/')
    block = block.replace('MANUAL_DIR = "../shared/data/binarized_mnist"',
                          f"MANUAL_DIR = {manual_dir!r}; DATA_DIR = {tfds_data_dir!r}")
    exec(compile(block, f"docs/python.md block {i + 1}", "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["same"]  # The .keras round trip gave the same log_prob.
  assert namespace["scores"]["nll"] > 0 and namespace["per_image"].shape == (300,)
  assert os.path.exists(tmp_path / "vae_savedmodel" / "saved_model.pb")
  assert "sample" in namespace["description"]["signatures"]
